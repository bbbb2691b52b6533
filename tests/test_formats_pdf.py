"""Searchable PDF output: text extracts in reading order where the boxes put it, the original page is untouched."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pymupdf
import pytest
from formats_data import doc_result, make_scan_pdf, need_tool, normalise, paths_for
from PIL import Image

from deepocr_cli.outputs.lines import page_text
from deepocr_cli.outputs.pdf import DEFAULT_IMAGE_DPI, render_pdf

# Page 1: two-column paper (title, text, equation, figure, caption); page 2: CJK with a table, on a page
# rotated by 90 degrees.
RAWS = ["paper_two_column.txt", "cjk.txt"]


@pytest.fixture
def converted(tmp_path: Path) -> tuple[Path, object, pymupdf.Document]:
    source = make_scan_pdf(tmp_path / "scan.pdf")
    result = doc_result(source, RAWS)
    data = render_pdf(result, paths_for(source))
    out = tmp_path / "scan.ocr.pdf"
    out.write_bytes(data)
    doc = pymupdf.open(out)
    yield out, result, doc
    doc.close()


def test_pymupdf_extracts_the_page_text_in_reading_order(converted) -> None:
    _, result, doc = converted
    for page, expected in zip(doc, result.pages, strict=True):
        assert normalise(page.get_text()) == normalise(page_text(expected))
        assert page_text(expected)  # a real comparison, not two empty strings
    assert "深度光学压缩" in doc[1].get_text()  # CJK survives as CJK


def test_pdftotext_extracts_the_page_text_in_reading_order(converted) -> None:
    out, result, _ = converted
    pdftotext = need_tool("pdftotext")
    # -raw keeps content-stream order, which is the reading order the layer is written in.
    text = subprocess.run([pdftotext, "-raw", "-enc", "UTF-8", str(out), "-"], check=True, capture_output=True,
                          text=True).stdout  # fmt: skip
    pages = text.split("\f")
    for i, expected in enumerate(result.pages):
        assert normalise(pages[i]) == normalise(page_text(expected))
    assert "先天下之忧而忧" in pages[1]


def _view_rect(page: pymupdf.Page, rect: pymupdf.Rect, result_page) -> tuple[float, ...]:
    """A rectangle found by MuPDF (unrotated page space) in the rendered page's pixels (upright)."""
    r = rect * page.rotation_matrix
    sx, sy = result_page.width / page.rect.width, result_page.height / page.rect.height
    return (r.x0 * sx, r.y0 * sy, r.x1 * sx, r.y1 * sy)


@pytest.mark.parametrize(("page_no", "word", "block"), [(0, "Lovelace", 1), (0, "decays", 3), (1, "压缩率", 1)])
def test_a_searched_word_is_found_inside_its_block_box(converted, page_no: int, word: str, block: int) -> None:
    _, result, doc = converted
    page, expected = doc[page_no], result.pages[page_no]
    hits = page.search_for(word)
    assert hits, f"{word!r} not found on page {page_no + 1}"
    x0, y0, x1, y1 = expected.blocks[block].boxes_px[0]
    assert word in expected.blocks[block].content
    hx0, hy0, hx1, hy1 = _view_rect(page, hits[0], expected)
    slack = 1.5  # pixels: rounding of the box to points and back
    assert x0 - slack <= hx0 < hx1 <= x1 + slack
    assert y0 - slack <= hy0 < hy1 <= y1 + slack


def test_original_drawings_images_and_streams_are_byte_identical(converted, tmp_path: Path) -> None:
    _, _, doc = converted
    src = pymupdf.open(tmp_path / "scan.pdf")
    for before, after in zip(src, doc, strict=True):
        assert after.rotation == before.rotation and after.mediabox == before.mediabox
        assert after.get_drawings() == before.get_drawings()
        old_contents, new_contents = before.get_contents(), after.get_contents()
        # The original streams are still there, in order, between the layer's opening and closing streams.
        assert new_contents[1:-1] == old_contents
        for xref in old_contents:
            assert doc.xref_stream_raw(xref) == src.xref_stream_raw(xref)
        images_before = [img[0] for img in before.get_images()]
        assert [img[0] for img in after.get_images()] == images_before
        for xref in images_before:
            assert doc.xref_stream_raw(xref) == src.xref_stream_raw(xref)
            assert doc.xref_object(xref) == src.xref_object(xref)
    src.close()


def test_the_text_layer_is_invisible(converted, tmp_path: Path) -> None:
    _, _, doc = converted
    src = pymupdf.open(tmp_path / "scan.pdf")
    for before, after in zip(src, doc, strict=True):
        assert after.get_pixmap(dpi=50).samples == before.get_pixmap(dpi=50).samples
    src.close()


def test_failed_pages_get_no_text_layer(tmp_path: Path) -> None:
    source = make_scan_pdf(tmp_path / "scan.pdf")
    result = doc_result(source, RAWS, failed=(1,))
    doc = pymupdf.open("pdf", render_pdf(result, paths_for(source)))
    assert "Lovelace" in doc[0].get_text()
    assert doc[1].get_text() == ""
    assert doc[1].get_contents() == pymupdf.open(source)[1].get_contents()


def test_inherited_resources_are_kept(tmp_path: Path) -> None:
    """A page that inherits its resources from the page tree still shows its image after the layer is added."""
    source = make_scan_pdf(tmp_path / "scan.pdf", rotations=(0,))
    doc = pymupdf.open(source)
    page_xref = doc[0].xref
    kind, resources = doc.xref_get_key(page_xref, "Resources")
    pages_xref = int(doc.xref_get_key(page_xref, "Parent")[1].split()[0])
    doc.xref_set_key(pages_xref, "Resources", resources if kind == "dict" else doc.xref_object(int(resources.split()[0])))
    doc.xref_set_key(page_xref, "Resources", "null")
    inherited = tmp_path / "inherited.pdf"
    doc.save(inherited)
    assert pymupdf.open(inherited)[0].get_images()  # the image resolves through the page tree
    out = pymupdf.open("pdf", render_pdf(doc_result(inherited, RAWS[:1]), paths_for(inherited)))
    assert out[0].get_images() and "Lovelace" in out[0].get_text()
    assert out[0].get_pixmap(dpi=40).samples == pymupdf.open(inherited)[0].get_pixmap(dpi=40).samples


def test_jpeg_source_is_embedded_unchanged_at_its_resolution(tmp_path: Path) -> None:
    source = tmp_path / "scan.jpg"
    Image.new("RGB", (1191, 1684), "white").save(source, "JPEG", quality=80, dpi=(150, 150))
    result = doc_result(source, RAWS[:1])
    doc = pymupdf.open("pdf", render_pdf(result, paths_for(source)))
    page = doc[0]
    assert page.rect.width == pytest.approx(1191 * 72 / 150) and page.rect.height == pytest.approx(1684 * 72 / 150)
    (xref, *_), = page.get_images()
    assert doc.xref_stream_raw(xref) == source.read_bytes()  # DCT data as the file holds it
    assert normalise(page.get_text()) == normalise(page_text(result.pages[0]))


def test_png_without_dpi_uses_the_default_and_multi_frame_tiff_gives_pages(tmp_path: Path) -> None:
    png = tmp_path / "page.png"
    Image.new("L", (600, 900), 255).save(png)
    doc = pymupdf.open("pdf", render_pdf(doc_result(png, RAWS[:1]), paths_for(png)))
    assert doc[0].rect.width == pytest.approx(600 * 72 / DEFAULT_IMAGE_DPI)
    tiff = tmp_path / "two.tiff"
    frames = [Image.new("RGB", (400, 500), c) for c in ("white", "yellow")]
    frames[0].save(tiff, save_all=True, append_images=frames[1:], dpi=(200, 200))
    result = doc_result(tiff, ["paper_two_column.txt"])
    doc = pymupdf.open("pdf", render_pdf(result, paths_for(tiff)))
    assert doc.page_count == 2 and doc[0].rect.width == pytest.approx(400 * 72 / 200)
    pix = doc[1].get_pixmap(dpi=200)
    assert Image.open(io.BytesIO(pix.tobytes("png"))).convert("RGB").getpixel((200, 250)) == (255, 255, 0)
    assert "Lovelace" in doc[0].get_text() and doc[1].get_text() == ""


def test_a_real_sample_document_keeps_its_own_text_and_gains_the_layer(tmp_path: Path) -> None:
    from deepocr_cli.sample_docs import make_sample_docs

    source = next(p for p in make_sample_docs(tmp_path / "samples") if p.name == "two_columns.pdf")
    before = pymupdf.open(source)[0].get_text()
    doc = pymupdf.open("pdf", render_pdf(doc_result(source, RAWS[:1]), paths_for(source)))
    text = doc[0].get_text()
    assert text.startswith(before) and "Ada Lovelace" in text[len(before) :]


def test_contents_given_as_an_indirect_array_are_spliced(tmp_path: Path) -> None:
    source = make_scan_pdf(tmp_path / "scan.pdf", rotations=(0,))
    doc = pymupdf.open(source)
    page_xref = doc[0].xref
    streams = doc[0].get_contents()
    array_xref = doc.get_new_xref()
    doc.update_object(array_xref, "[" + " ".join(f"{x} 0 R" for x in streams) + "]")
    doc.xref_set_key(page_xref, "Contents", f"{array_xref} 0 R")
    odd = tmp_path / "indirect-array.pdf"
    doc.save(odd)
    out = pymupdf.open("pdf", render_pdf(doc_result(odd, RAWS[:1]), paths_for(odd)))
    assert out[0].get_contents()[1:-1] == pymupdf.open(odd)[0].get_contents()
    assert "Lovelace" in out[0].get_text()
    assert out[0].get_pixmap(dpi=40).samples == pymupdf.open(odd)[0].get_pixmap(dpi=40).samples


def test_exif_rotated_image_is_embedded_upright(tmp_path: Path) -> None:
    source = tmp_path / "phone.jpg"
    im = Image.new("RGB", (300, 200), "blue")
    im.paste((255, 0, 0), (0, 0, 150, 200))  # stored: left half red; EXIF 6 shows it rotated 90° clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(source, "JPEG", quality=95, exif=exif, dpi=(100, 100))
    result = doc_result(source, RAWS[:1])
    result.pages[0].width, result.pages[0].height = 200, 300  # the pipeline sees the upright image
    page = pymupdf.open("pdf", render_pdf(result, paths_for(source)))[0]
    assert (page.rect.width, page.rect.height) == pytest.approx((144, 216))
    shown = Image.open(io.BytesIO(page.get_pixmap(dpi=100).tobytes("png"))).convert("RGB")
    top, bottom = shown.getpixel((100, 30)), shown.getpixel((100, 270))
    assert top[0] > 200 > top[2] and bottom[2] > 200 > bottom[0]  # red above blue: upright


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_text_lands_in_its_box_on_cropped_and_rotated_pages(tmp_path: Path, rotation: int) -> None:
    """The boxes refer to the page as rendered: the crop box, turned by /Rotate. Both must be undone."""
    doc = pymupdf.open(make_scan_pdf(tmp_path / "scan.pdf", rotations=(rotation,)))
    doc[0].set_cropbox(pymupdf.Rect(50, 60, 500, 760))
    cropped = tmp_path / "cropped.pdf"
    doc.save(cropped)
    result = doc_result(cropped, RAWS[:1])
    page = pymupdf.open("pdf", render_pdf(result, paths_for(cropped)))[0]
    x0, y0, x1, y1 = result.pages[0].blocks[1].boxes_px[0]
    hx0, hy0, hx1, hy1 = _view_rect(page, page.search_for("Lovelace")[0], result.pages[0])
    assert x0 - 1.5 <= hx0 < hx1 <= x1 + 1.5 and y0 - 1.5 <= hy0 < hy1 <= y1 + 1.5
