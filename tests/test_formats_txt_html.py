"""Plain-text and HTML review outputs; the review page is also checked in headless Chromium."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from formats_data import doc_result, make_scan_pdf, need_tool, paths_for
from lxml import html as lxml_html
from PIL import Image

from deepocr_cli.outputs.html import label_colour, page_flags, render_html, repetition_loop, sanitize
from deepocr_cli.outputs.lines import page_text
from deepocr_cli.outputs.txt import PAGE_BREAK, render_txt

RAWS = ["paper_two_column.txt", "cjk.txt", "table_page.txt"]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_scan_pdf(tmp_path_factory.mktemp("formats") / "scan.pdf", rotations=(0, 0, 0, 0))


def test_txt_has_one_form_feed_separated_part_per_page(source: Path) -> None:
    result = doc_result(source, [*RAWS, None], failed=(3,))
    text = render_txt(result, paths_for(source)).decode("utf-8")
    parts = text.split(PAGE_BREAK)
    assert len(parts) == 4 and parts[3] == ""
    for part, page in zip(parts, result.pages, strict=False):
        if page.error is None:
            assert part == page_text(page) + "\n"
    assert parts[0].startswith("Optical Compression of Long Contexts\nAda Lovelace, Charles Babbage\n1 Introduction\n")
    assert "Mode English Chinese\ntext table text table\nTiny 0.373 0.422 0.307 0.266" in parts[2]  # rows in order
    assert "P(r) = \\frac{1}{1 + e^{k (r - r_0)}} \\quad (1)" in parts[0]  # LaTeX source, no \[ \]
    assert "<" not in text and "#" not in text


def test_html_is_self_contained_with_one_box_per_grounding_box(source: Path) -> None:
    result = doc_result(source, RAWS)
    page = lxml_html.fromstring(render_html(result, paths_for(source)))
    for el in page.iter():
        for attr in ("src", "href"):
            value = el.get(attr)
            assert value is None or value.startswith("data:"), f"external asset {value!r}"
    assert not page.xpath("//link") and len(page.xpath("//img")) == 3
    for p in result.pages:
        n = p.index + 1
        boxes = page.xpath(f"//section[@id='page-{n}']//div[contains(@class,'box')]")
        assert len(boxes) == sum(len(b.boxes_px) for b in p.blocks)
        texts = page.xpath(f"//section[@id='page-{n}']//div[contains(@class,'blk')]")
        assert [t.get("data-block") for t in texts] == [f"p{n}-b{b.index}" for b in p.blocks]
        for box in boxes:  # every box links to a text block of the same page
            assert page.xpath(f"//div[@id='{box.get('data-block')}']")
    assert "Optical Compression of Long Contexts" in page.xpath("//div[@id='p1-b0']//h1")[0].text_content()
    assert page.xpath("//div[@id='p3-b1']//table//td[@rowspan='2']")  # the table rendered as a table


def test_html_never_passes_model_markup_through(source: Path) -> None:
    assert sanitize('<p onclick="x()">a<script>alert(1)</script><img src="http://e/x.png" alt="fig"></p>') == (
        '<p>a<span class="fig">[fig]</span></p>'
    )
    result = doc_result(source, RAWS[:1])
    result.pages[0].blocks[1].content = 'Ada <script>alert("x")</script><iframe src="http://evil"></iframe>'
    out = render_html(result, paths_for(source)).decode()
    assert "alert(" not in out and "evil" not in out


def test_page_flags(source: Path) -> None:
    result = doc_result(source, [RAWS[0], None], failed=(1,))
    ok, failed = result.pages
    assert page_flags(ok) == []
    ok.truncated, ok.raw_text = True, "intro " + "the same words again " * 12
    ok.plan = {"attempts": [{"mode": "small"}, {"mode": "base"}]}
    assert page_flags(ok) == ["truncated", "repetition", "escalated"]
    assert page_flags(failed) == ["failed"]
    assert not repetition_loop("an ordinary ending of a page, nothing repeats here.")
    out = render_html(result, paths_for(source)).decode()
    assert '<span class="flag failed">failed</span>' in out and "CUDA error: out of memory" in out


def _chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    exe = need_tool("chromium")
    base = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--force-device-scale-factor=1",
            "--window-size=1280,1000", f"--user-data-dir={tmp / 'profile'}", "--virtual-time-budget=3000"]  # fmt: skip
    return subprocess.run([*base, *args], check=True, capture_output=True, text=True, timeout=120)


_PROBE = """<script>
var img=document.querySelector('#page-1 img').getBoundingClientRect();
var boxes=[].map.call(document.querySelectorAll('#page-1 .box'),function(b){var r=b.getBoundingClientRect();
  return {id:b.getAttribute('data-block'),label:b.getAttribute('data-label'),l:r.left,t:r.top,w:r.width,h:r.height};});
var box=document.querySelector('.box[data-block="p1-b3"]');
box.dispatchEvent(new MouseEvent('mouseenter'));
var hoverBox=[].map.call(document.querySelectorAll('.hl'),function(e){return e.className+'#'+e.getAttribute('data-block');});
box.dispatchEvent(new MouseEvent('mouseleave'));
document.getElementById('p1-b6').dispatchEvent(new MouseEvent('mouseenter'));
var hoverText=[].map.call(document.querySelectorAll('.hl'),function(e){return e.className+'#'+e.getAttribute('data-block');});
document.body.setAttribute('data-probe',JSON.stringify({img:{l:img.left,t:img.top,w:img.width,h:img.height},
  boxes:boxes,hoverBox:hoverBox,hoverText:hoverText}));
</script></body>"""


@pytest.mark.slow
def test_review_page_in_headless_chromium(tmp_path: Path) -> None:
    from deepocr_cli.sample_docs import make_sample_docs

    source = next(p for p in make_sample_docs(tmp_path / "samples") if p.name == "two_columns.pdf")
    result = doc_result(source, ["paper_two_column.txt"])
    page = result.pages[0]
    review = tmp_path / "two_columns.html"
    review.write_bytes(render_html(result, paths_for(source)))
    probe = tmp_path / "probe.html"
    probe.write_text(review.read_text(encoding="utf-8").replace("</body>", _PROBE), encoding="utf-8")

    dom = _chromium("--dump-dom", probe.as_uri(), tmp=tmp_path).stdout
    data = json.loads(lxml_html.fromstring(dom).xpath("//body")[0].get("data-probe"))
    # DOM: the script ran, and hovering links a box to its text and a text to its box(es).
    assert sorted(data["hoverBox"]) == ["blk hl#p1-b3", "box hl#p1-b3"]
    assert sorted(data["hoverText"]) == ["blk hl#p1-b6", "box hl#p1-b6"]
    img = data["img"]
    assert img["w"] == pytest.approx(560) and img["h"] == pytest.approx(560 * page.height / page.width, abs=1)
    assert [b["id"] for b in data["boxes"]] == [f"p1-b{b.index}" for b in page.blocks]

    shot = tmp_path / "shot.png"
    _chromium(f"--screenshot={shot}", review.as_uri(), tmp=tmp_path)
    pixels = Image.open(shot).convert("RGB")
    scale = img["w"] / page.width
    for rect, block in zip(data["boxes"], page.blocks, strict=True):
        x0, y0, x1, y1 = block.boxes_px[0]
        # Where the JSON puts the box, in screen pixels...
        assert rect["l"] == pytest.approx(img["l"] + x0 * scale, abs=1.0)
        assert rect["t"] == pytest.approx(img["t"] + y0 * scale, abs=1.0)
        assert rect["w"] == pytest.approx((x1 - x0) * scale, abs=1.0)
        # ...the screenshot shows the label's colour on the box's border (right edge, clear of the number).
        want = tuple(int(label_colour(block.label)[i : i + 2], 16) for i in (1, 3, 5))
        got = pixels.getpixel((round(rect["l"] + rect["w"] - 2), round(rect["t"] + rect["h"] / 2)))
        assert max(abs(a - b) for a, b in zip(got, want, strict=True)) <= 40, (block.label, got, want)
    # Away from the boxes the page image is there: the title's black ink, left of box 1.
    title_row = round(img["t"] + page.blocks[0].boxes_px[0][1] * scale)
    assert re.search("Roots of Quadratic", pymupdf_text(source))
    assert min(pixels.getpixel((x, title_row + d))[0] for x in range(int(img["l"]), int(img["l"] + 200))
               for d in range(-12, 12)) < 80  # fmt: skip


def pymupdf_text(source: Path) -> str:
    import pymupdf

    with pymupdf.open(source) as doc:
        return doc[0].get_text()
