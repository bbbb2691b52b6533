"""Write the project's own small sample documents, deterministically, with PyMuPDF, Pillow and RDKit."""

from __future__ import annotations

import argparse
import io
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pymupdf
from PIL import Image, ImageFilter

log = logging.getLogger(__name__)

A4 = (595.0, 842.0)  # points
SLIDE = (960.0, 540.0)  # 16:9 landscape, points
_BLACK = (0.0, 0.0, 0.0)
_GRAY = (0.35, 0.35, 0.35)
_BLUE = (0.16, 0.35, 0.65)
_FIXED_DATE = "D:20250101000000Z"  # fixed metadata so the bytes do not change between runs

# The base-14 fonts MuPDF embeds nothing for are WinAnsi only: sample text sticks to Latin-1 on purpose.
PROSE: tuple[str, ...] = (
    "Optical character recognition turns pictures of text into text that a computer can search, copy and "
    "index. Early systems matched each glyph against stored templates and failed on any font they had not "
    "seen. Modern systems read whole lines at once and learn the shapes of letters from millions of examples.",
    "Vision-language models go one step further. They look at a rendered page as an image, compress it into a "
    "few hundred vision tokens and write out the page as structured text: headings, paragraphs, tables and "
    "formulas, each with its position on the page. The ratio between text tokens and vision tokens measures how "
    "much the encoder compresses; below ten, the decoded text is almost always right.",
    "This page is a plain page of prose with a real text layer. A converter can compare what the model reads "
    "with what the PDF already contains, which makes it a useful first check of any pipeline.",
)
TEXT_TITLE = "Reading Pages with Vision Tokens"
SLIDE_TITLE = "Quarterly Review"
SLIDE_BULLETS = (
    "Revenue grew 12% year over year",
    "Two new plants opened in Lyon",
    "Hiring plan on track for Q4",
)
CHART_TITLE = "Units Sold per Quarter"
CHART_DATA = (("Q1", 42), ("Q2", 57), ("Q3", 35), ("Q4", 68))
MOLECULE_NAME = "Caffeine"
MOLECULE_SMILES = "CN1C=NC2=C1C(=O)N(C(=O)N2C)C"


def _new_doc() -> pymupdf.Document:
    doc = pymupdf.open()
    doc.set_metadata(
        {
            "producer": "deepocr sample_docs",
            "creator": "deepocr",
            "creationDate": _FIXED_DATE,
            "modDate": _FIXED_DATE,
        }
    )
    return doc


def _save(doc: pymupdf.Document, path: Path) -> None:
    # no_new_id + fixed dates: the same bytes on every run, so regenerated files do not look changed.
    doc.save(path, garbage=3, deflate=True, no_new_id=True)
    doc.close()


def _text_page(path: Path) -> None:
    doc = _new_doc()
    page = doc.new_page(width=A4[0], height=A4[1])
    page.insert_text((72, 96), TEXT_TITLE, fontname="hebo", fontsize=20)
    y = 130.0
    for para in PROSE:
        rect = pymupdf.Rect(72, y, A4[0] - 72, y + 160)
        left = page.insert_textbox(rect, para, fontname="tiro", fontsize=12, lineheight=1.4, align=3)
        y = rect.y1 - left + 14  # `left` is the unused height of the box
    page.insert_text((A4[0] / 2 - 4, A4[1] - 40), "1", fontname="tiro", fontsize=10, color=_GRAY)
    _save(doc, path)


def _quadratic_formula(page: pymupdf.Page, cx: float, y: float) -> None:
    """Draw x = (-b ± sqrt(b² - 4ac)) / 2a with a real fraction bar and radical sign."""
    fs = 13.0
    num = "b² - 4ac"
    num_w = pymupdf.get_text_length(num, fontname="tiit", fontsize=fs)
    lead_w = pymupdf.get_text_length("-b ± ", fontname="tiit", fontsize=fs)
    total = lead_w + 10 + num_w
    x0 = cx - total / 2
    page.insert_text((x0 - 36, y + 5), "x =", fontname="tiit", fontsize=fs)
    page.insert_text((x0, y - 6), "-b ± ", fontname="tiit", fontsize=fs)
    rx = x0 + lead_w
    # radical: short tick, long down-stroke, up-stroke, then the vinculum over the radicand
    for a, b in (
        ((rx, y - 11), (rx + 2, y - 12)),
        ((rx + 2, y - 12), (rx + 5, y - 4)),
        ((rx + 5, y - 4), (rx + 9, y - 20)),
        ((rx + 9, y - 20), (rx + 11 + num_w, y - 20)),
    ):
        page.draw_line(a, b, color=_BLACK, width=0.7)
    page.insert_text((rx + 10, y - 6), num, fontname="tiit", fontsize=fs)
    page.draw_line((x0 - 2, y), (x0 + total + 2, y), color=_BLACK, width=0.8)  # fraction bar
    page.insert_text((cx - 7, y + 15), "2a", fontname="tiit", fontsize=fs)
    page.insert_text((x0 + total + 40, y + 5), "(1)", fontname="tiro", fontsize=11)


def _two_columns(path: Path) -> None:
    doc = _new_doc()
    page = doc.new_page(width=A4[0], height=A4[1])
    page.insert_text((56, 70), "Roots of Quadratic Equations", fontname="hebo", fontsize=18)
    gap, margin = 24.0, 56.0
    col_w = (A4[0] - 2 * margin - gap) / 2
    left = pymupdf.Rect(margin, 95, margin + col_w, 330)
    right = pymupdf.Rect(left.x1 + gap, 95, A4[0] - margin, 330)
    page.insert_textbox(left, " ".join(PROSE[:2]), fontname="tiro", fontsize=10, lineheight=1.3, align=3)
    right_text = (
        "Every quadratic equation ax² + bx + c = 0 with a different from zero has two roots, which may coincide "
        "or be complex. They follow from completing the square, which gives the formula below. The sign of the "
        "discriminant b² - 4ac tells how many real roots exist. Table 1 lists three examples."
    )
    page.insert_textbox(right, right_text, fontname="tiro", fontsize=10, lineheight=1.3, align=3)
    _quadratic_formula(page, A4[0] / 2, 380)
    # a small ruled table: 3 columns x 4 rows, caption above
    page.insert_text((margin, 440), "Table 1. Examples of quadratic equations.", fontname="tibo", fontsize=10)
    rows = (
        ("Equation", "Discriminant", "Real roots"),
        ("x² - 5x + 6 = 0", "1", "2, 3"),
        ("x² + 2x + 1 = 0", "0", "-1"),
        ("x² + x + 1 = 0", "-3", "none"),
    )
    col_x = (margin, margin + 180, margin + 300, margin + 420)
    top, row_h = 450.0, 22.0
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            page.insert_text(
                (col_x[c] + 6, top + r * row_h + 15), cell, fontname="tibo" if r == 0 else "tiro", fontsize=10
            )
    for r in range(len(rows) + 1):
        width = 1.0 if r in (0, 1, len(rows)) else 0.3
        page.draw_line((col_x[0], top + r * row_h), (col_x[-1], top + r * row_h), color=_BLACK, width=width)
    for x in col_x:
        page.draw_line((x, top), (x, top + len(rows) * row_h), color=_BLACK, width=0.3)
    bottom = pymupdf.Rect(margin, top + len(rows) * row_h + 24, A4[0] - margin, A4[1] - 60)
    page.insert_textbox(bottom, PROSE[2], fontname="tiro", fontsize=10, lineheight=1.3, align=3)
    _save(doc, path)


def _slide(path: Path) -> None:
    doc = _new_doc()
    page = doc.new_page(width=SLIDE[0], height=SLIDE[1])
    page.draw_rect(pymupdf.Rect(0, 0, SLIDE[0], 110), color=None, fill=_BLUE)
    page.insert_text((60, 75), SLIDE_TITLE, fontname="hebo", fontsize=44, color=(1, 1, 1))
    for i, bullet in enumerate(SLIDE_BULLETS):
        y = 190 + i * 80
        page.draw_circle((78, y - 10), 6, color=None, fill=_BLUE)  # drawn: WinAnsi fonts have no bullet glyph
        page.insert_text((100, y), bullet, fontname="helv", fontsize=30)
    page.insert_text((SLIDE[0] - 60, SLIDE[1] - 25), "3", fontname="helv", fontsize=14, color=_GRAY)
    _save(doc, path)


def _bar_chart(path: Path) -> None:
    doc = _new_doc()
    page = doc.new_page(width=A4[0], height=A4[1])
    title_w = pymupdf.get_text_length(CHART_TITLE, fontname="hebo", fontsize=18)
    page.insert_text(((A4[0] - title_w) / 2, 110), CHART_TITLE, fontname="hebo", fontsize=18)
    x0, y0, x1, y1 = 110.0, 160.0, 520.0, 520.0  # plot area; y grows downwards
    vmax = 80
    page.draw_line((x0, y1), (x1, y1), color=_BLACK, width=1)  # x axis
    page.draw_line((x0, y0), (x0, y1), color=_BLACK, width=1)  # y axis
    for v in range(0, vmax + 1, 20):
        y = y1 - (y1 - y0) * v / vmax
        page.draw_line((x0 - 4, y), (x0, y), color=_BLACK, width=1)
        if v:
            page.draw_line((x0, y), (x1, y), color=(0.85, 0.85, 0.85), width=0.5)
        page.insert_text((x0 - 26, y + 4), str(v), fontname="helv", fontsize=10)
    slot = (x1 - x0) / len(CHART_DATA)
    for i, (label, value) in enumerate(CHART_DATA):
        bx = x0 + i * slot + slot * 0.2
        top = y1 - (y1 - y0) * value / vmax
        page.draw_rect(pymupdf.Rect(bx, top, bx + slot * 0.6, y1), color=None, fill=_BLUE)
        vw = pymupdf.get_text_length(str(value), fontname="hebo", fontsize=11)
        page.insert_text((bx + slot * 0.3 - vw / 2, top - 6), str(value), fontname="hebo", fontsize=11)
        lw = pymupdf.get_text_length(label, fontname="helv", fontsize=11)
        page.insert_text((bx + slot * 0.3 - lw / 2, y1 + 18), label, fontname="helv", fontsize=11)
    page.insert_text(((x0 + x1) / 2 - 25, y1 + 45), "Quarter", fontname="helv", fontsize=12)
    page.insert_text(
        (x0 - 45, (y0 + y1) / 2 + 40), "Units (thousands)", fontname="helv", fontsize=12, rotate=90
    )
    caption = "Figure 1. Units sold per quarter in 2024; Q4 is the best quarter."
    page.insert_text((x0, y1 + 90), caption, fontname="tiro", fontsize=11)
    _save(doc, path)


def _molecule(path: Path) -> None:
    # RDKit is imported here: it is only needed for this one file and takes a while to import.
    from rdkit import Chem
    from rdkit.Chem import rdDepictor, rdMolDescriptors
    from rdkit.Chem.Draw import rdMolDraw2D

    mol = Chem.MolFromSmiles(MOLECULE_SMILES)
    rdDepictor.SetPreferCoordGen(True)
    rdDepictor.Compute2DCoords(mol)
    drawer = rdMolDraw2D.MolDraw2DCairo(600, 450)
    opts = drawer.drawOptions()
    opts.legendFontSize = 28
    opts.clearBackground = True
    formula = rdMolDescriptors.CalcMolFormula(mol)
    drawer.DrawMolecule(mol, legend=f"{MOLECULE_NAME} ({formula})")  # the legend is the caption
    drawer.FinishDrawing()
    im = Image.open(io.BytesIO(drawer.GetDrawingText())).convert("RGB")
    im.save(path, format="PNG", optimize=True)


def _scanned_page(path: Path, source_pdf: Path) -> None:
    """Rasterise the text page like a cheap scan: 100 dpi, gray paper, noise, a slight tilt, JPEG."""
    with pymupdf.open(source_pdf) as doc:
        pix = doc.load_page(0).get_pixmap(
            matrix=pymupdf.Matrix(100 / 72, 100 / 72), alpha=False, colorspace=pymupdf.csGRAY
        )
        page = Image.frombytes("L", (pix.width, pix.height), pix.samples)
    rng = np.random.default_rng(20250101)
    a = np.asarray(page, dtype=np.float32)
    a = 40 + a * (205 / 255)  # ink no longer pure black, paper about 92% gray
    a += rng.normal(0, 9, a.shape)  # sensor noise
    im = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L").filter(ImageFilter.GaussianBlur(0.6))
    im = im.rotate(1.2, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=232)
    im.convert("RGB").save(path, format="JPEG", quality=70, optimize=True)


SAMPLE_FILES: tuple[str, ...] = (
    "text_page.pdf",
    "two_columns.pdf",
    "slide.pdf",
    "bar_chart.pdf",
    "molecule.png",
    "scanned_page.jpg",
)


def make_sample_docs(directory: Path | str) -> list[Path]:
    """Write the sample documents into a directory (created if needed), replacing older copies.

    Args:
        directory: where to write them.

    Returns:
        The written files, in the order of :data:`SAMPLE_FILES`.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / name for name in SAMPLE_FILES]
    makers: list[Callable[[], None]] = [
        lambda: _text_page(paths[0]),
        lambda: _two_columns(paths[1]),
        lambda: _slide(paths[2]),
        lambda: _bar_chart(paths[3]),
        lambda: _molecule(paths[4]),
        lambda: _scanned_page(paths[5], paths[0]),
    ]
    for path, make in zip(paths, makers, strict=True):
        make()
        log.info("wrote %s (%d bytes)", path, path.stat().st_size)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m deepocr_cli.sample_docs DIR``; prints the written paths."""
    parser = argparse.ArgumentParser(prog="python -m deepocr_cli.sample_docs", description=__doc__)
    parser.add_argument("directory", type=Path, help="folder to write the sample documents into")
    args = parser.parse_args(argv)
    for path in make_sample_docs(args.directory):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
