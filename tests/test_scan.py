"""Scan preparation: blank pages, orientation, skew, boxes mapped back to the source page, and the run around
it (blank pages never reach the model, turned pages' boxes come back in source coordinates)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pymupdf
import pytest
from page_helpers import prose_page
from PIL import Image, ImageDraw, ImageFilter

from deepocr_cli.options import ConvertOptions
from deepocr_cli.planning.estimate import _render_gray
from deepocr_cli.planning.image_estimate import work_gray
from deepocr_cli.planning.scan import analyse_scan
from deepocr_cli.planning.upright import prepare_page
from deepocr_cli.run.convert import convert
from deepocr_cli.sample_docs import PROSE

A4 = (595.0, 842.0)


def _text_page(paragraphs: int = 6, fontsize: float = 10.0, gray: float = 0.0) -> np.ndarray:
    return prose_page(paragraphs, fontsize, gray, "tiro", 3)


def _scan(gray: np.ndarray, sigma: float = 8.0, quality: int = 60, seed: int = 0) -> np.ndarray:
    a = gray.astype(np.float32) * 0.93 + np.random.default_rng(seed).normal(0, sigma, gray.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"))


def _skewed(gray: np.ndarray, degrees: float) -> np.ndarray:
    """The page turned ``degrees`` counter-clockwise, as a skewed scan (lines rising to the right)."""
    im = Image.fromarray(gray).rotate(degrees, resample=Image.Resampling.BICUBIC, fillcolor=255)
    return np.asarray(im)


# --------------------------------------------------------------------------- blank


def test_white_noisy_bleed_through_and_punched_pages_are_blank() -> None:
    white = np.full((1400, 990), 255, np.uint8)
    assert analyse_scan(white).blank
    assert analyse_scan(_scan(white, sigma=15, quality=40)).blank
    # bleed-through: the other side's text, mirrored, blurred, 25 gray levels deep
    other = Image.fromarray(_text_page()).transpose(Image.Transpose.FLIP_LEFT_RIGHT).filter(ImageFilter.GaussianBlur(2))
    bleed = 240 - (255 - np.asarray(other, np.float32)) / 255 * 25
    verdict = analyse_scan(_scan(bleed.astype(np.uint8), sigma=5))
    assert verdict.blank and verdict.blank_measure["content_cells"] <= 2
    # punch holes along the left edge, dark as the scanner lid, and a dark border at the bottom
    im = Image.fromarray(_scan(white, sigma=6))
    d = ImageDraw.Draw(im)
    for cy in (420, 980):
        d.ellipse((30, cy - 20, 70, cy + 20), fill=20)
    d.rectangle((0, 1370, 990, 1400), fill=10)
    assert analyse_scan(np.asarray(im)).blank


def test_page_number_short_line_light_grey_and_six_point_print_are_not_blank() -> None:
    doc = pymupdf.open()
    page = doc.new_page(width=A4[0], height=A4[1])
    page.insert_text((A4[0] / 2 - 6, A4[1] - 40), "17", fontsize=10)
    number = _render_gray(page).copy()
    line = doc.new_page(width=A4[0], height=A4[1])
    line.insert_text((72, 120), "Continued on the next page.", fontsize=11)
    for gray in (number, _render_gray(line).copy(), _text_page(gray=0.72), _text_page(12, fontsize=6)):
        verdict = analyse_scan(_scan(gray, sigma=10))
        assert not verdict.blank, verdict.blank_measure
        assert not analyse_scan(gray).blank


def test_a_page_holding_only_a_photo_or_a_filled_shape_is_not_blank() -> None:
    for fill in (40, 120, 170):  # dark, mid and light tones with no texture: the binarised ink is only an outline
        im = Image.new("L", (990, 1400), 250)
        ImageDraw.Draw(im).rectangle((200, 300, 700, 800), fill=fill)
        verdict = analyse_scan(np.asarray(im))
        assert not verdict.blank, (fill, verdict.blank_measure)


def test_light_print_on_dark_bars_is_ink_and_a_bare_bar_is_not() -> None:
    from deepocr_cli.planning.scan import clean_ink

    def slide(text: bool) -> np.ndarray:
        doc = pymupdf.open()
        page = doc.new_page(width=A4[0], height=A4[1])
        for y in (80, 300, 520):  # three dark title bars, white print on them
            page.draw_rect(pymupdf.Rect(40, y, A4[0] - 40, y + 60), color=None, fill=(0.3, 0.3, 0.3))
            if text:
                page.insert_text((60, y + 40), "Results of the second survey", fontsize=22, color=(1, 1, 1))
        return _render_gray(page).copy()

    scale = 1400 / A4[1]
    bar_rows = slice(round(80 * scale) + 4, round(140 * scale) - 4)  # inside the first bar, clear of its edges
    lettered = slide(True)
    weak, strong, _ = clean_ink(lettered)
    white = lettered[bar_rows] > 230  # the letters' bodies, lighter than any paper-dark ink
    assert (weak[bar_rows] & white).sum() > 300 and (strong[bar_rows] & white).sum() > 300
    weak, strong, _ = clean_ink(slide(False))
    assert weak[bar_rows].sum() == 0 and strong[bar_rows].sum() == 0  # the bar itself is no print


def test_a_blank_page_skips_the_binarisation_with_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    from deepocr_cli.planning import scan
    from deepocr_cli.planning.image_estimate import ink_mask

    calls: list[int] = []

    def counted(gray: np.ndarray) -> np.ndarray:
        calls.append(1)
        return ink_mask(gray)

    monkeypatch.setattr(scan, "ink_mask", counted)
    blank = _scan(np.full((1400, 990), 245, np.uint8), sigma=10)
    text = _scan(_text_page(), sigma=10)
    for gray, binarised in ((blank, 0), (text, 1)):
        calls.clear()
        weak, strong, measures = scan.clean_ink(gray)
        assert len(calls) == binarised
        weak2, strong2, measures2 = scan.clean_ink(gray, ink_mask(gray))  # the ink given: the full path
        assert np.array_equal(weak, weak2) and np.array_equal(strong, strong2) and measures == measures2
    assert analyse_scan(blank).blank and not analyse_scan(text).blank


def test_no_skip_blank_never_calls_a_page_blank() -> None:
    assert not analyse_scan(np.full((1400, 990), 250, np.uint8), blank=False).blank


# --------------------------------------------------------------------------- orientation and skew


@pytest.mark.parametrize("turns", [0, 1, 2, 3])
def test_each_quarter_turn_is_found(turns: int) -> None:
    scanned = np.ascontiguousarray(np.rot90(_scan(_text_page()), turns))  # turned counter-clockwise
    verdict = analyse_scan(scanned)
    assert verdict.rotation == 90 * turns
    assert verdict.orientation == ("upright" if turns == 0 else "turned")


def _word_table(cols: int = 5, rows: int = 50, fontsize: float = 8.0) -> np.ndarray:
    """A dense table of short monospaced cells: its two axes are about equally sharp (a close axis call)."""
    words = " ".join(PROSE).split()
    doc = pymupdf.open()
    page = doc.new_page(width=A4[0], height=A4[1])
    k = 0
    for c in range(cols):
        for r in range(rows):
            page.insert_text((50 + c * 495 / cols, 60 + r * 740 / rows), " ".join(words[k : k + 2])[:14],
                             fontsize=fontsize, fontname="cour")
            k += 2
    return _render_gray(page).copy()


@pytest.mark.parametrize("turns", [1, 2, 3])
def test_a_close_axis_call_is_settled_by_the_orientation_classifier(turns: int) -> None:
    turned = np.ascontiguousarray(np.rot90(_word_table(), turns))
    verdict = analyse_scan(turned)
    assert verdict.blank_measure["structure"] < 1.08  # a close call by the profiles alone
    assert (verdict.rotation, verdict.orientation) == (90 * turns, "turned")


def test_a_page_without_lines_is_left_as_it_is_and_says_so() -> None:
    im = Image.new("L", (990, 1400), 255)
    ImageDraw.Draw(im).ellipse((300, 500, 700, 900), outline=0, width=6)  # a drawing, no text
    verdict = analyse_scan(np.asarray(im))
    assert not verdict.blank and verdict.rotation == 0 and verdict.orientation == "undecided"


def test_no_rotate_and_no_deskew_leave_the_page_alone() -> None:
    scanned = np.ascontiguousarray(np.rot90(_skewed(_scan(_text_page()), 4), 2))
    verdict = analyse_scan(scanned, rotate=False, deskew=False)
    assert (verdict.rotation, verdict.orientation, verdict.skew) == (0, "off", 0.0)
    assert analyse_scan(scanned, rotate=False).skew == pytest.approx(-4, abs=0.5)


@pytest.mark.parametrize("degrees", [-9.0, -2.5, 3.0, 7.5])
def test_skew_is_measured_within_half_a_degree(degrees: float) -> None:
    verdict = analyse_scan(_skewed(_scan(_text_page()), degrees))
    assert verdict.skew == pytest.approx(-degrees, abs=0.5)


def _mark_box(a: np.ndarray, r: int = 3) -> tuple[int, int, int, int]:
    """Bounding box of the gray (128) mark: mid-gray pixels whose whole (2r+1)-square is mid-gray (text edges
    never are), grown back by r."""
    m = ((a >= 100) & (a <= 156)).astype(np.int32)
    c = np.pad(m, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    k = 2 * r + 1
    full = (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) == k * k
    ys, xs = np.nonzero(full)
    return int(xs.min()), int(ys.min()), int(xs.max()) + k, int(ys.max()) + k


@pytest.mark.parametrize(("turns", "degrees"), [(1, 0.0), (0, 6.0), (3, -4.0), (2, 8.0)])
def test_boxes_map_back_to_where_the_mark_is_on_the_source(turns: int, degrees: float) -> None:
    upright = Image.fromarray(_text_page(4))
    ImageDraw.Draw(upright).rectangle((560, 900, 840, 1080), fill=128)  # a gray figure among the text
    # the source as scanned, at twice the analysis resolution: skewed, then turned
    big = upright.resize((upright.width * 2, upright.height * 2))
    source = Image.fromarray(np.ascontiguousarray(np.rot90(_skewed(np.asarray(big), degrees), turns)))
    verdict = analyse_scan(work_gray(source))
    assert verdict.rotation == 90 * turns
    prepared, transform = prepare_page(source, verdict)
    assert transform.source_size == source.size and transform.size == prepared.size
    # the figure found on the image the model sees, mapped back, lies where it is on the source
    want = _mark_box(np.asarray(source))
    got = transform.box(_mark_box(np.asarray(prepared)))
    assert max(abs(g - w) for g, w in zip(got, want, strict=True)) <= 12, (got, want)


# --------------------------------------------------------------------------- in a run


def _blank_pdf(path: Path, pages: int) -> Path:
    two = pymupdf.open()
    a = np.clip(np.random.default_rng(3).normal(240, 8, (600, 424)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=60)
    two.new_page(width=A4[0], height=A4[1]).insert_image(pymupdf.Rect(0, 0, *A4), stream=buf.getvalue())
    two.new_page(width=A4[0], height=A4[1])  # and a white one
    doc = pymupdf.open()
    while doc.page_count < pages:
        doc.insert_pdf(two, to_page=min(2, pages - doc.page_count) - 1)
    doc.save(path)
    return path


def _counting_factory(checkpoint: Path, calls: list[int]):
    def factory():
        from deepocr_cli.engine import load_engine

        engine = load_engine(str(checkpoint), device="cpu")
        real = engine.engine_request

        def engine_request(*a, **k):  # every sequence the model is asked for goes through it
            calls.append(1)
            return real(*a, **k)

        engine.engine_request = engine_request
        return engine

    return factory


def test_a_large_blank_pdf_never_calls_the_model(random_checkpoint: Path, tmp_path: Path) -> None:
    pdf = _blank_pdf(tmp_path / "blank.pdf", 300)
    calls: list[int] = []
    report = convert([pdf], ConvertOptions(model=str(random_checkpoint), mode="tiny", deep=False),
                     engine_factory=_counting_factory(random_checkpoint, calls))
    assert calls == []
    assert report.exit_code == 0 and report.files[0].blank_pages == 300
    assert report.to_json()["totals"]["blank_pages"] == 300
    out = json.loads((tmp_path / "blank.json").read_text())
    assert all(p["blank"] and p["scan"]["blank_measure"] for p in out["pages"])
    md = (tmp_path / "blank.md").read_text()
    assert md.count("<!-- page") == 300 and all(
        line.startswith("<!-- page") or line in ("", "---") for line in md.splitlines())


def test_no_skip_blank_sends_blank_pages_to_the_model(random_checkpoint: Path, tmp_path: Path) -> None:
    pdf = _blank_pdf(tmp_path / "blank.pdf", 2)
    calls: list[int] = []
    convert([pdf], ConvertOptions(model=str(random_checkpoint), mode="tiny", deep=False, max_new_tokens=2,
                                  skip_blank=False), engine_factory=_counting_factory(random_checkpoint, calls))
    assert sum(calls) == 2


def test_a_turned_page_goes_upright_and_its_boxes_come_back_in_source_coordinates(
    scripted_checkpoint: Path, tmp_path: Path
) -> None:
    source = Image.fromarray(np.ascontiguousarray(np.rot90(_text_page(), 1)))  # turned 90 counter-clockwise
    source.save(tmp_path / "turned.png")
    convert([tmp_path / "turned.png"], ConvertOptions(model=str(scripted_checkpoint), mode="tiny", deep=False,
                                                      max_new_tokens=32))
    page = json.loads((tmp_path / "turned.json").read_text())["pages"][0]
    assert page["scan"]["rotation"] == 90 and not page["blank"]
    assert (page["width"], page["height"]) == source.size
    # the scripted answer's box [100, 50, 900, 620] on the upright page (990 x 1400), seen on the source
    verdict = analyse_scan(work_gray(source))
    _, transform = prepare_page(source, verdict)
    upright_px = (int(100 / 999 * 990), int(50 / 999 * 1400), int(900 / 999 * 990), int(620 / 999 * 1400))
    assert page["blocks"][0]["boxes_px"] == [list(transform.box(upright_px))]
    x1, y1, x2, y2 = page["blocks"][0]["boxes_px"][0]
    assert 0 <= x1 < x2 <= source.width and 0 <= y1 < y2 <= source.height
    # --reparse reads the stored raw output in the coordinates the model saw and maps it back the same way
    from deepocr_cli.run.reparse import reparse

    reparse([tmp_path / "turned.png"], ConvertOptions(model=str(scripted_checkpoint), mode="tiny", deep=False))
    again = json.loads((tmp_path / "turned.json").read_text())["pages"][0]
    assert again["blocks"][0]["boxes_px"] == page["blocks"][0]["boxes_px"]
    assert (again["width"], again["height"]) == source.size


# --------------------------------------------------------------------------- passwords


def _encrypted(path: Path) -> Path:
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 100), "secret page", fontsize=12)
    doc.save(path, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="u-Pa55", owner_pw="o-Pa55")
    return path


def test_user_password_pdfs_open_with_the_right_password_only(tmp_path: Path) -> None:
    from deepocr_cli.errors import InputError
    from deepocr_cli.inputs.render import open_document

    pdf = _encrypted(tmp_path / "locked.pdf")
    with pytest.raises(InputError, match="needs a password") as e:
        open_document(pdf)
    with pytest.raises(InputError, match="wrong password") as e2:
        open_document(pdf, password="nope")
    assert "nope" not in str(e2.value) and "u-Pa55" not in str(e.value)
    with open_document(pdf, password="u-Pa55") as reader:
        assert reader.page_count == 1


def test_a_wrong_password_is_a_one_line_file_error_and_no_password_is_written(
    random_checkpoint: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pdf = _encrypted(tmp_path / "locked.pdf")
    caplog.set_level("DEBUG")
    opts = ConvertOptions(model=str(random_checkpoint), mode="tiny", deep=False, max_new_tokens=2,
                          password="wrong-Pa55")
    report = convert([pdf], opts)
    assert report.files[0].status == "failed" and report.files[0].reason == "encrypted: wrong password"
    assert "wrong-Pa55" not in repr(opts) and "wrong-Pa55" not in json.dumps(opts.output_settings())
    assert "wrong-Pa55" not in json.dumps(report.to_json()) and "wrong-Pa55" not in caplog.text
    # every format reopens the source with the password (the searchable PDF, ALTO, the review page) and none
    # writes it
    from deepocr_cli.outputs.formats import FORMATS

    report = convert([pdf], ConvertOptions(model=str(random_checkpoint), mode="tiny", deep=False,
                                           max_new_tokens=2, password="u-Pa55", formats=tuple(FORMATS)))
    assert report.files[0].status in ("converted", "partial"), report.files[0].reason
    assert len(report.files[0].outputs) == len(FORMATS)
    for out in report.files[0].outputs:
        assert b"u-Pa55" not in Path(out).read_bytes(), out


def test_cli_reads_the_password_from_a_file_or_the_environment(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from deepocr_cli.cli import app

    pdf = _encrypted(tmp_path / "locked.pdf")
    secret = tmp_path / "pw.txt"
    secret.write_text("u-Pa55\n")
    ok = CliRunner().invoke(app, ["plan", str(pdf), "--json", "--password-file", str(secret)])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["files"][0]["error"] is None
    env = CliRunner().invoke(app, ["plan", str(pdf), "--json"], env={"DEEPOCR_PDF_PASSWORD": "bad"})
    assert "wrong password" in env.stdout and "bad" not in env.stdout.replace("bad password", "")
