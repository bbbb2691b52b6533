"""Blank pages (issue #18, third round): faint print under heavy noise is never blank, blank scans with noise,
bleed-through, punch holes or a dark border are, and the speed paths (a page with nothing dark skips the line
search; a scanned PDF page is judged on its own JPEG; blank pages' checkpoints are not synced one by one) give
the verdict the full path gives."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pymupdf
import pytest
from page_helpers import prose_page
from PIL import Image, ImageDraw, ImageFilter

from deepocr_cli.inputs.render import open_document
from deepocr_cli.inputs.scanpage import scan_page_image
from deepocr_cli.options import ConvertOptions
from deepocr_cli.planning import scan
from deepocr_cli.planning.estimate import _render_gray
from deepocr_cli.planning.scan import BLANK_MAX_CELLS, LINED_MIN, analyse_scan
from deepocr_cli.run import scanprep

A4 = (595.0, 842.0)


def _text_page(fontsize: float = 10.0, gray: float = 0.0, paragraphs: int = 8) -> np.ndarray:
    return prose_page(paragraphs, fontsize, gray, "helv", 4)


def _scanned(gray: np.ndarray, *, paper: float = 225, sigma: float = 30, quality: int = 35, seed: int = 0,
             other: np.ndarray | None = None, bleed: float = 30, holes: bool = False, border: bool = False,
             degrees: float = 0.0) -> np.ndarray:
    """A scan of ``gray`` as the bench makes one: paper tone, bleed-through of ``other`` (mirrored, blurred),
    skew, punch holes or a dark border, Gaussian noise, JPEG."""
    rng = np.random.default_rng(seed)
    page = gray.astype(np.float32) * (paper / 255.0)
    h, w = page.shape
    if other is not None:
        o = Image.fromarray(other).resize((w, h)).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        o = np.asarray(o.filter(ImageFilter.GaussianBlur(1.5)), dtype=np.float32)
        page -= (255.0 - o) / 255.0 * bleed
    im = Image.fromarray(np.clip(page, 0, 255).astype(np.uint8))
    if degrees:
        im = im.rotate(degrees, resample=Image.Resampling.BICUBIC, fillcolor=int(paper))
    d = ImageDraw.Draw(im)
    if holes:
        r = w * 0.02
        for fy in (0.15, 0.5, 0.85):
            d.ellipse((w * 0.05 - r, h * fy - r, w * 0.05 + r, h * fy + r), fill=30)
    if border:
        d.rectangle((0, 0, int(w * 0.03), h), fill=20)
        d.rectangle((0, h - int(w * 0.03), w, h), fill=20)
    a = np.asarray(im, dtype=np.float32) + rng.normal(0, sigma, (h, w))
    buf = io.BytesIO()
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"))


def _page_number() -> np.ndarray:
    page = pymupdf.open().new_page(width=A4[0], height=A4[1])
    page.insert_text((A4[0] / 2 - 6, A4[1] - 40), "17", fontsize=10)
    return _render_gray(page).copy()


def _one_line() -> np.ndarray:
    page = pymupdf.open().new_page(width=A4[0], height=A4[1])
    page.insert_text((72, 120), "Continued on the next page.", fontsize=11)
    return _render_gray(page).copy()


WHITE = np.full((1400, 990), 255, np.uint8)


# --------------------------------------------------------------------------- the verdict


@pytest.mark.parametrize("gray", [0.68, 0.75])
def test_light_grey_print_under_heavy_noise_is_not_blank(gray: float) -> None:
    page = _scanned(_text_page(gray=gray), sigma=32, quality=30, degrees=3.0)
    verdict = analyse_scan(page)
    assert not verdict.blank, verdict.blank_measure
    # the hard case: too faint to leave cells of ink; the print's lines keep it from being blank
    m = verdict.blank_measure
    assert m["content_cells"] <= BLANK_MAX_CELLS or m.get("sure_cells", 99) > BLANK_MAX_CELLS or m.get(
        "lined", 0) >= LINED_MIN
    # and turned a quarter (lines along the columns)
    assert not analyse_scan(np.ascontiguousarray(np.rot90(page))).blank


def test_the_faint_line_measure_separates_light_grey_print_from_noise_and_bleed_through() -> None:
    other = _text_page()
    grey = _scanned(_text_page(gray=0.72), sigma=30, quality=30, seed=1)
    paper = float(np.median(grey))
    assert scan.lined_print(grey, paper) >= LINED_MIN
    for bleed_page in (_scanned(WHITE, sigma=30, other=other, seed=2), _scanned(WHITE, sigma=6, quality=70,
                                                                                 other=other, bleed=35, seed=3)):
        assert scan.lined_print(bleed_page, float(np.median(bleed_page))) < LINED_MIN


def test_six_point_print_a_page_number_and_a_short_line_under_heavy_noise_are_not_blank() -> None:
    pages = {"6pt": _text_page(fontsize=6, paragraphs=20), "number": _page_number(),
             "line": _one_line()}
    for name, gray in pages.items():
        for seed in (0, 1):
            verdict = analyse_scan(_scanned(gray, sigma=28, quality=35, seed=seed))
            assert not verdict.blank, (name, seed, verdict.blank_measure)


@pytest.mark.parametrize("kind", ["plain", "bleed", "bleed-quiet", "holes", "border", "all"])
def test_blank_scans_are_blank(kind: str) -> None:
    other = _text_page()
    opts = {"plain": {}, "bleed": {"other": other}, "bleed-quiet": {"other": other, "sigma": 5, "quality": 75},
            "holes": {"holes": True}, "border": {"border": True},
            "all": {"other": other, "holes": True, "border": True, "degrees": -4.0}}[kind]
    for sigma in (8, 25):
        page = _scanned(WHITE, **{"sigma": sigma, **opts})
        verdict = analyse_scan(page)
        assert verdict.blank, (kind, sigma, verdict.blank_measure)
        assert analyse_scan(np.ascontiguousarray(np.rot90(page, 3))).blank


def test_a_blank_scan_drawn_at_another_scale_is_still_blank() -> None:
    """MuPDF drawing a scan at another scale sharpens its noise every few pixels (a beat along both axes): not
    lines of print."""
    page = _scanned(WHITE, sigma=25, other=_text_page(), seed=4)
    for scale in (0.7, 1.05, 1.8):
        h, w = page.shape
        small = Image.fromarray(page).resize((round(w * scale), round(h * scale)), Image.Resampling.BICUBIC)
        doc = pymupdf.open()
        buf = io.BytesIO()
        small.save(buf, "PNG")  # not a JPEG: drawn by MuPDF, not decoded by the scanned-page path
        doc.new_page(width=A4[0], height=A4[1]).insert_image(pymupdf.Rect(0, 0, *A4), stream=buf.getvalue(),
                                                             keep_proportion=False)
        verdict = analyse_scan(_render_gray(doc[0]).copy())
        assert verdict.blank, (scale, verdict.blank_measure)


# --------------------------------------------------------------------------- the speed paths


def test_a_page_with_nothing_dark_skips_the_line_search_with_the_same_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    pages = [WHITE, _scanned(WHITE, sigma=8, quality=60), _scanned(WHITE, sigma=25), _scanned(_text_page())]
    quick = [analyse_scan(p) for p in pages]
    assert [v.blank for v in quick] == [True, True, True, False]
    assert scan.blank_at_once(scan.clean_ink(pages[1])[2])  # the shortcut is taken on the quiet scan
    monkeypatch.setattr(scan, "blank_at_once", lambda noise: False)
    for page, v in zip(pages, quick, strict=True):
        full = analyse_scan(page)
        assert (full.blank, full.rotation, full.orientation, full.skew) == (v.blank, v.rotation, v.orientation,
                                                                            v.skew)
        if v.blank and not v.blank_measure["print"]:
            assert full.blank_measure == v.blank_measure


def _jpeg_pdf(path: Path, grays: list[np.ndarray], fmt: str = "JPEG") -> Path:
    doc = pymupdf.open()
    for g in grays:
        h, w = g.shape
        buf = io.BytesIO()
        Image.fromarray(g).save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        pw, ph = (A4[0], A4[1]) if h >= w else (A4[1], A4[0])
        doc.new_page(width=pw, height=ph).insert_image(pymupdf.Rect(0, 0, pw, ph), stream=buf.getvalue(),
                                                       keep_proportion=False)
    doc.save(path)
    return path


def test_a_scanned_pdf_page_is_judged_on_its_own_image_with_the_render_s_verdict(tmp_path: Path) -> None:
    small = Image.fromarray(_text_page()).resize((826, 1169))  # a 100-dpi scan: the render upsamples it
    pages = {
        "white": _scanned(WHITE, sigma=8, quality=60), "bleed-holes": _scanned(WHITE, sigma=12, other=_text_page(),
                                                                                holes=True),
        "text": _scanned(_text_page(), sigma=10), "grey": _scanned(_text_page(gray=0.72), sigma=30, quality=30),
        "number": _scanned(_page_number(), sigma=10), "turned": np.ascontiguousarray(
            np.rot90(_scanned(_text_page(), sigma=10))), "100dpi": np.asarray(small),
    }
    want = {"white": True, "bleed-holes": True, "text": False, "grey": False, "number": False, "turned": False,
            "100dpi": False}
    opt = ConvertOptions(model="unused")
    for fmt in ("JPEG", "PNG"):
        pdf = _jpeg_pdf(tmp_path / f"scans-{fmt}.pdf", list(pages.values()), fmt)
        with open_document(pdf) as reader:
            for i, name in enumerate(pages):
                assert scan_page_image(reader, i, 1400) is not None, name
                fast = scanprep.scan_page(reader, i, None, opt)
                rendered = analyse_scan(scanprep.analysis_gray(reader, i, None, fast=False))
                assert fast.blank == rendered.blank == want[name], (fmt, name, fast.blank_measure,
                                                                    rendered.blank_measure)
                assert fast.rotation == rendered.rotation, (fmt, name)


def test_only_a_page_that_is_one_upright_image_takes_the_scanned_page_path(tmp_path: Path) -> None:
    jpeg = io.BytesIO()
    Image.fromarray(_scanned(WHITE, sigma=8)).save(jpeg, "JPEG", quality=80)
    png = io.BytesIO()
    Image.fromarray(WHITE).save(png, "PNG")
    doc = pymupdf.open()
    full = pymupdf.Rect(0, 0, *A4)
    doc.new_page(width=A4[0], height=A4[1]).insert_image(full, stream=jpeg.getvalue(), keep_proportion=False)
    p = doc.new_page(width=A4[0], height=A4[1])  # a scan with a line of text on it
    p.insert_image(full, stream=jpeg.getvalue(), keep_proportion=False)
    p.insert_text((72, 72), "stamped", fontsize=11)
    doc.new_page(width=A4[0], height=A4[1]).insert_image(full, stream=png.getvalue())  # Flate: decoded by MuPDF
    doc.new_page(width=A4[0], height=A4[1]).insert_image(pymupdf.Rect(0, 0, 300, 400), stream=jpeg.getvalue())
    p = doc.new_page(width=A4[0], height=A4[1])  # turned by /Rotate
    p.insert_image(full, stream=jpeg.getvalue(), keep_proportion=False)
    p.set_rotation(90)
    p = doc.new_page(width=A4[0], height=A4[1])  # an annotation drawn over the scan
    p.insert_image(full, stream=jpeg.getvalue(), keep_proportion=False)
    p.add_text_annot((100, 100), "note")
    doc.new_page(width=A4[0], height=A4[1])  # empty
    p = doc.new_page(width=A4[0], height=A4[1])  # a searchable PDF's scan: an invisible OCR text layer on it
    p.insert_image(full, stream=jpeg.getvalue(), keep_proportion=False)
    p.insert_text((72, 72), "recognised words", fontsize=11, render_mode=3)
    exif = Image.new("L", (10, 10)).getexif()
    exif[0x0112] = 6  # "turn me": a viewer may or may not, so the page is rendered
    turned = io.BytesIO()
    Image.fromarray(_scanned(WHITE, sigma=8)).save(turned, "JPEG", quality=80, exif=exif.tobytes())
    doc.new_page(width=A4[0], height=A4[1]).insert_image(full, stream=turned.getvalue(), keep_proportion=False)
    doc.save(tmp_path / "mixed.pdf")
    with open_document(tmp_path / "mixed.pdf") as reader:
        taken = [scan_page_image(reader, i, 1400) is not None for i in range(reader.page_count)]
    assert taken == [True, False, True, False, False, False, False, True, False]


def test_blank_pages_are_checkpointed_without_a_sync_each(random_checkpoint: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from deepocr_cli.run import state
    from deepocr_cli.run.convert import convert

    pdf = _jpeg_pdf(tmp_path / "blank.pdf", [_scanned(WHITE, sigma=8, quality=60, seed=s) for s in range(12)])
    syncs: list[int] = []
    real = os.fsync

    def counted(fd: int) -> None:
        syncs.append(fd)
        real(fd)

    monkeypatch.setattr(state.os, "fsync", counted)
    written: list[bool] = []
    append = state.PartialPages.append

    def recorded(self, page, sync: bool = True) -> None:  # noqa: ANN001
        written.append(sync)
        append(self, page, sync)

    monkeypatch.setattr(state.PartialPages, "append", recorded)
    report = convert([pdf], ConvertOptions(model=str(random_checkpoint), mode="tiny", deep=False))
    assert report.files[0].blank_pages == 12
    assert written == [False] * 12  # every blank page is recorded, none synced on its own
    assert len(syncs) < 12
    # a record written without a sync reads back like any other
    part = state.PartialPages(tmp_path / "p.partial.jsonl", "k")
    part.start([])
    page = scanprep.blank_page(0, open_document(pdf), analyse_scan(WHITE), 0.0)
    part.append(page, sync=False)
    assert part.load()[0].blank


def test_plan_reads_a_scanned_page_as_convert_does(tmp_path: Path) -> None:
    from deepocr_cli.planning.plan import page_is_blank

    pages = [_scanned(WHITE, sigma=12, other=_text_page(), holes=True), _scanned(_page_number(), sigma=10),
             _scanned(_text_page(gray=0.72), sigma=30, quality=30)]
    pdf = _jpeg_pdf(tmp_path / "scans.pdf", pages)
    opt = ConvertOptions(model="unused")
    with open_document(pdf) as reader:
        planned = [page_is_blank(reader, i) for i in range(3)]
        converted = [scanprep.scan_page(reader, i, None, opt).blank for i in range(3)]
    assert planned == converted == [True, False, False]


def test_a_300_dpi_scan_is_read_at_the_working_size(tmp_path: Path) -> None:
    big = Image.fromarray(_scanned(_text_page(), sigma=10)).resize((2480, 3508))
    buf = io.BytesIO()
    big.save(buf, "JPEG", quality=80)
    doc = pymupdf.open()
    doc.new_page(width=A4[0], height=A4[1]).insert_image(pymupdf.Rect(0, 0, *A4), stream=buf.getvalue(),
                                                         keep_proportion=False)
    doc.save(tmp_path / "scan300.pdf")
    with open_document(tmp_path / "scan300.pdf") as reader:
        im = scan_page_image(reader, 0, 1400)
        assert im is not None and max(im.size) == 1400 and im.mode == "L"
        assert not scanprep.scan_page(reader, 0, None, ConvertOptions(model="unused")).blank
