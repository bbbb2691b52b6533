"""Image path of the text estimator: how much text a page raster holds, without OCR.

Pipeline (all vectorised numpy, ~WORK_LONG_SIDE px rasters):

1. ``_binarize``: local, polarity-aware thresholding against the block background, so light text on dark bars
   counts as ink and the bars, shaded boxes and uneven scan illumination do not.
2. ``_drop_lines``: ink runs longer than RULE_LEN_FRAC of the page (horizontal or vertical) are rules, frames,
   bar edges, table borders and plot axes, never glyph strokes; they are removed before lines are looked for.
3. ``_fragments``: the page is cut into narrow vertical strips; inside each strip the row profile splits the ink
   into line fragments. A strip is narrow enough that column gutters, skew and neighbouring figures rarely join
   two lines, and it needs no page segmentation. Each fragment is measured (core: first to last row inked at
   least half as much as its densest row; inked width with word spaces) and judged by its geometry: too thin,
   too dense, too sparse, too tall for the page's lines, or a lone blob (a plot marker, a dot) is not text.
4. ``_link_lines``: fragments continuing one another across neighbouring strips form a line; the line gives the
   core height (width-weighted) and the script (core / line height: Latin ~0.5, CJK near 1; or strokes stacked
   per inked column and ink density, for lines mixing CJK with Latin words).
5. Characters = inked width / (advance per core height x line core); marks = ink segments of a fragment's core
   that neither span its x-height band nor reach above or below it (punctuation, dot leaders); tokens: CJK per
   character, Latin per character and per mark (LATIN_TOKENS_PER_CHAR, LATIN_TOKENS_PER_MARK).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from deepocr_cli.planning.ink import binarize, drop_lines
from deepocr_cli.planning.textest import (
    CJK_TOKENS_PER_CHAR,
    SMALL_TEXT_QUANTILE,
    WORK_LONG_SIDE,
    TextEstimate,
)
from deepocr_cli.planning.textlines import MIN_WORD_GAP_PX, STRIP, WORD_GAP_PER_CORE, fragments, link_lines

#: Longest side analysed (px): larger images are shrunk to it, which bounds the time per page.
MAX_LONG_SIDE = 1800
#: Average advance of a character (spaces included) in units of the measured core height (x-height for Latin,
#: glyph body for CJK); fitted on synthetic renders (Helvetica, Times, Courier, china-s) at 6-24 pt (CJK refitted
#: for the strip measure on the china-s renders of tests/test_estimate.py; Latin unchanged, within ~7%).
LATIN_ADVANCE_PER_CORE = 0.83
CJK_ADVANCE_PER_CORE = 1.24
#: x-height and CJK body as a share of the em, to turn core heights into font sizes.
LATIN_CORE_PER_EM = 0.50
CJK_CORE_PER_EM = 0.70
#: Core/line-height above which a line looks CJK (Latin ~0.5-0.65: ascenders and descenders stick out).
CJK_CORE_SHARE = 0.65
#: A line is also CJK where its stroke score is positive: CJK_STROKE_WEIGHT x strokes - CJK_DENSITY_WEIGHT x
#: density - CJK_STROKE_BIAS, with strokes = vertical ink runs per inked column (ideographs and kana stack
#: 2-5 horizontal strokes, Latin letters 1-3) and density = ink share of the fragments' core boxes (a CJK body
#: box holds more white than a Latin x-height band). The core share alone puts only 56% of the CJK characters
#: of real Chinese and Japanese documents on CJK lines: lines mixing CJK with Latin words and TeX commands sit at
#: 0.6-0.7. Logistic fit on 6,456 lines labelled by their text layers (bench/calibrate_image.py --fit-script: 14
#: Chinese and Japanese TeX manuals and 60 random TeX Live PDFs, none from a benchmark-corpus folder): CJK
#: characters on CJK lines 56% -> 92%, other characters on Latin lines 90% -> 84%.
#: The stroke score counts only on lines whose share exceeds CJK_MIN_SHARE: a CJK glyph fills its line's height
#: (96% of the CJK characters of those documents sit on lines above 0.55), so a line whose ascenders and
#: descenders stand well beyond its core is Latin whatever its strokes; without this, thin typewriter faces
#: (Courier) read as CJK on most lines. With it: CJK characters on CJK lines 86%, others on Latin lines 86%.
CJK_MIN_SHARE = 0.55
CJK_STROKE_WEIGHT = 10.89
CJK_DENSITY_WEIGHT = 30.00
CJK_STROKE_BIAS = 9.56
#: Latin tokens = LATIN_TOKENS_PER_CHAR x characters (spaces included) + LATIN_TOKENS_PER_MARK x marks (ink
#: segments that neither span the x-height band nor reach above or below it: . , - = : ; and dot leaders). BPE
#: merges letters into word pieces (~0.2 tokens per character) but spends a token on nearly every punctuation mark,
#: which is what makes code, TeX sources and tables of contents cost two to three times prose per character.
#: Fitted (least absolute relative error, `bench/calibrate_image.py --fit --pdf-tree ... --sample 550 --seed 13`)
#: on 766 pages of 550 random TeX Live, R, Octave and gnuplot PDFs and two manuals nobody here wrote (none from a
#: benchmark-corpus folder), truth = DeepSeek tokenizer counts of each page's text layer: leave-one-out 81% within
#: +-25%, against 74% for words + characters refitted on the same pages and 65% for the earlier estimator (0.59 x
#: words + 0.122 x characters, fitted on the two manuals alone; bench/estimator_ab.py --rev b430c74). About one
#: token a mark, as BPE has it. A word term adds nothing once marks are counted (fitted: -0.003 tokens a word).
LATIN_TOKENS_PER_CHAR = 0.191
LATIN_TOKENS_PER_MARK = 1.102
_MIN_CORE_PX = 3  # below this a fragment is noise, a dot or a hairline
_MIN_DOTTED_CORE_PX = 2  # ... unless it is a row of three or more dots (leaders)
_MARK_CORE_SHARE = 0.5  # a fragment with a core under this share of its line's is all punctuation
_INK_DENSITY = (0.08, 0.65)  # ink share of a fragment's core box; solid blobs and sparse specks fall outside
_FIGURE_HEIGHT_FACTOR = 3.5  # fragments taller than this x the typical fragment are figures
_MIN_WIDTH_PER_CORE = 1.2  # a text fragment is at least about one glyph and a half wide; a plot marker is not
_MIN_SIZED_LINE = 3.0  # line heights of width a line needs to count for the smallest print


def _cjk_score(share: np.ndarray, strokes: np.ndarray, density: np.ndarray) -> np.ndarray:
    """Per line, > 0 where it looks CJK: by its core share, or by its stroke score where the share is not Latin
    (see CJK_STROKE_WEIGHT and CJK_MIN_SHARE)."""
    strokes_say = CJK_STROKE_WEIGHT * strokes - CJK_DENSITY_WEIGHT * density - CJK_STROKE_BIAS
    return np.maximum(share - CJK_CORE_SHARE, np.where(share > CJK_MIN_SHARE, strokes_say, -np.inf))


def estimate_image_array(gray: np.ndarray) -> TextEstimate:
    """Estimate the text of a gray page raster (uint8 [H, W], ideally ~WORK_LONG_SIDE long).

    Args:
        gray: the page in gray levels.

    Returns:
        An estimate with source "image".
    """
    return _analyse(gray)[0]


def ink_mask(gray: np.ndarray) -> np.ndarray:
    """The ink the estimator reads: binarised (``binarize``), rules and frames removed (``drop_lines``).

    Args:
        gray: the page in gray levels (uint8 [H, W]).

    Returns:
        bool [H, W].
    """
    return drop_lines(binarize(gray))


def _analyse(gray: np.ndarray, ink: np.ndarray | None = None) -> tuple[TextEstimate, dict[str, np.ndarray]]:
    """The estimate and the per-fragment measures behind it (kept text fragments only: CJK or not, characters,
    word starts, ink segments and marks among them; strip and rows; line index), and per line the script
    measures (core share, strokes per column, density), for bench/calibrate_image.py. ``ink``: the page's
    ``ink_mask`` (or a cleaned copy of it) when the caller already has it (scan preparation)."""
    if ink is None:
        ink = ink_mask(gray)
    f = fragments(ink)
    core, height, width = f["core"], f["height"], f["width"]
    regular = core >= _MIN_CORE_PX
    # a row of three or more separate small marks is text too, though its core is thinner than that of letters:
    # dot leaders, ellipses, dashed fills (a speck of noise rarely has two others on its rows within a strip)
    dotted = (core >= _MIN_DOTTED_CORE_PX) & (f["nseg"] >= 3)
    keep = (
        (regular | dotted)
        & (f["density"] >= _INK_DENSITY[0])
        & (f["density"] <= _INK_DENSITY[1])
        & ((f["extent"] >= _MIN_WIDTH_PER_CORE * core) | (f["nseg"] > 1))
    )
    if keep.any():
        typical = float(np.median(height[keep & regular] if (keep & regular).any() else height[keep]))
        keep &= height <= _FIGURE_HEIGHT_FACTOR * typical
    if not keep.any():
        return TextEstimate(0.0, "image", 0, 0, 0, None), {}
    core, width = core[keep], width[keep]
    y0, y1 = f["y0"][keep], f["y1"][keep]
    strip_k = f["strip"][keep]
    row_line, prev = link_lines(strip_k, y0, y1, gray.shape[0])
    # script, core and print size are judged per run of fragments in adjacent strips: a row of short cells
    # (chart labels, table numbers) joined across column gaps has too few ascenders to tell Latin from CJK
    near = (prev >= 0) & (strip_k - strip_k[np.maximum(prev, 0)] == 1)
    line = np.where(near, prev, np.arange(len(prev)))
    while True:
        nxt = line[line]
        if np.array_equal(nxt, line):
            break
        line = nxt
    nl = int(line.max()) + 1
    top = np.full(nl, gray.shape[0], dtype=np.int64)
    bottom = np.zeros(nl, dtype=np.int64)
    np.minimum.at(top, line, y0)
    np.maximum.at(bottom, line, y1)
    wsum = np.bincount(line, weights=width, minlength=nl)
    # the line's core from its letters: rows of dots on it (leaders) would make its print look smaller
    letters = width * (core >= _MIN_CORE_PX)
    wletters = np.bincount(line, weights=letters, minlength=nl)
    line_core = np.where(
        wletters > 0,
        np.bincount(line, weights=letters * core, minlength=nl) / np.maximum(wletters, 1e-9),
        np.bincount(line, weights=width * core, minlength=nl) / np.maximum(wsum, 1e-9),
    )
    # script per line by its core share: a line's height spans the ascenders and descenders of all its
    # fragments, so Latin lines sit at ~0.45-0.65 and CJK lines near 1; pages often mix both (code, terms), and
    # a CJK line holding Latin words falls to 0.6-0.7, where its strokes per column still tell it (_cjk_score)
    # A short line (a table cell, a label, a number) has too few glyphs to show ascenders reliably: it follows
    # the width-weighted majority of the page's long lines.
    share = line_core / np.maximum(bottom - top, 1)
    strokes = np.bincount(line, weights=f["strokes"][keep], minlength=nl) / np.maximum(
        np.bincount(line, weights=f["inked"][keep], minlength=nl), 1e-9
    )
    density = np.bincount(line, weights=f["density"][keep] * width, minlength=nl) / np.maximum(wsum, 1e-9)
    score = _cjk_score(share, strokes, density)
    long_line = wsum >= _MIN_SIZED_LINE * (bottom - top)
    ref = long_line if long_line.any() else wsum > 0
    order = np.argsort(score[ref])
    cum = np.cumsum(wsum[ref][order])
    page_cjk = bool(score[ref][order][np.searchsorted(cum, cum[-1] / 2)] > 0)
    line_cjk = np.where(long_line, score > 0, page_cjk)
    cjk = line_cjk[line]
    advance = np.where(cjk, CJK_ADVANCE_PER_CORE, LATIN_ADVANCE_PER_CORE)
    core_per_em = np.where(cjk, CJK_CORE_PER_EM, LATIN_CORE_PER_EM)
    # characters from the line's core: a fragment holding a glyph's upper or lower part alone has a small core
    chars_per_frag = width / (advance * line_core[line])
    chars = float(chars_per_frag.sum())
    # word starts (a candidate feature bench/calibrate_image.py fits; the token rates do not use it): one per
    # chain of linked fragments plus one per word-wide gap inside a fragment or across a strip boundary
    # (trailing blank of the left fragment + leading blank of the right one)
    lc = line_core[line]
    pi = np.maximum(prev, 0)
    boundary = (prev >= 0) & (
        STRIP * (strip_k - strip_k[pi]) + f["first"][keep] - f["last"][keep][pi]
        > np.maximum(WORD_GAP_PER_CORE * lc, MIN_WORD_GAP_PX)
    )
    word_starts = f["wgaps"][keep] + boundary + (prev < 0)
    cjk_chars = float(chars_per_frag[cjk].sum())
    # marks: a fragment whose core is under half its line's is punctuation through and through (dot leaders,
    # dashes, an ellipsis), each of its ink segments a mark
    frag_marks = np.where(core < _MARK_CORE_SHARE * lc, f["nseg"][keep], f["marks"][keep])
    marks = float(frag_marks[~cjk].sum())
    tokens = (
        cjk_chars * CJK_TOKENS_PER_CHAR
        + LATIN_TOKENS_PER_CHAR * (chars - cjk_chars)
        + LATIN_TOKENS_PER_MARK * marks
    )
    # smallest print: a line's width-weighted core (fragment slivers do not fake tiny print), over lines at
    # least three times as wide as tall (a lone mark or the tail of a glyph is no line)
    em = line_core[line] / core_per_em
    sized = (wsum >= _MIN_SIZED_LINE * (bottom - top))[line]
    if not sized.any():
        sized[:] = True
    by_size = np.argsort(em[sized])
    cum_chars = np.cumsum(chars_per_frag[sized][by_size])
    small = float(em[sized][by_size][np.searchsorted(cum_chars, SMALL_TEXT_QUANTILE * cum_chars[-1])])
    detail = {
        "cjk": cjk,
        "chars": chars_per_frag,
        "words": word_starts,
        "nseg": f["nseg"][keep],
        "marks": frag_marks,
        "strip": strip_k,
        "y0": y0,
        "y1": y1,
        "line": line,
        "line_share": share,
        "line_strokes": strokes,
        "line_density": density,
        # for scan preparation (deepocr_cli/planning/scan.py): rows above and below each fragment's core, and
        # its low and high marks
        "above": (f["lo"] - f["y0"])[keep],
        "below": (f["y1"] - f["hi"])[keep],
        "low_marks": f["low_marks"][keep],
        "high_marks": f["high_marks"][keep],
    }
    est = TextEstimate(
        tokens,
        "image",
        round(chars),
        round(cjk_chars),
        len(np.unique(row_line)),
        small / max(gray.shape),
    )
    return est, detail


def _gray_lut(image: Image.Image) -> np.ndarray | None:  # float32 [256]
    """Gray level of each palette index of a "P" image whose gray levels are an affine function of the index
    (bilevel scans, gray ramps), else None. Box averaging commutes with an affine map, so such an image can be
    reduced on its indices and mapped to gray afterwards: a 4000x2864 bilevel PNG converts in ~24 ms, its
    indices reduce in ~8 ms. Returns the (unclipped) map over all 256 indices."""
    if image.mode != "P" or "transparency" in image.info:
        return None
    pal = np.asarray(image.getpalette("RGB") or [], dtype=np.float32).reshape(-1, 3)
    if len(pal) < 2:
        return None
    gray = pal @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # PIL's L = ITU-R 601-2 luma
    index = np.arange(256, dtype=np.float32)
    lut = gray[0] + index * (gray[-1] - gray[0]) / (len(pal) - 1)  # unclipped: lut[1] - lut[0] is the slope
    if np.abs(gray - lut[: len(pal)]).max() > 1.0:
        return None
    return lut


def _reduction(long_side: int) -> int:
    """Integer box-reduction factor bringing ``long_side`` closest to WORK_LONG_SIDE without going more than
    10% below it (small print keeps its pixels)."""
    k = max(1, round(long_side / WORK_LONG_SIDE))
    while k > 1 and long_side / k < 0.9 * WORK_LONG_SIDE:
        k -= 1
    return k


def work_gray(image: Image.Image) -> np.ndarray:
    """The page in gray levels at about WORK_LONG_SIDE (at most MAX_LONG_SIDE), as the estimator reads it.

    Args:
        image: any PIL image.

    Returns:
        uint8 [H, W].
    """
    # shrink large images with an integer box reduction first (cheap, no blur), then, if still above
    # MAX_LONG_SIDE, an area-averaging resize, which bounds the analysis time (a 2100-px scan took ~70 ms
    # analysed as it was). Reducing before the gray conversion of a palette image does the per-pixel work on
    # the small copy.
    factor = _reduction(max(image.size))
    lut = _gray_lut(image) if factor > 1 else None
    if lut is not None:
        index = np.asarray(image)
        h, w, k = index.shape[0] // factor * factor, index.shape[1] // factor * factor, factor
        rows = index[0:h:k].astype(np.uint16)  # k x k index sums: rows, then columns (strided adds)
        for i in range(1, k):
            rows += index[i:h:k]
        total = rows[:, 0:w:k].copy()
        for j in range(1, k):
            total += rows[:, j:w:k]
        # the affine map of the mean index is the mean gray: one small table over the possible sums
        table = np.clip(lut[0] + (lut[1] - lut[0]) * np.arange(256 * k * k) / (k * k) + 0.5, 0, 255)
        gray = Image.fromarray(table.astype(np.uint8)[total])
    else:
        gray = image.convert("L")
        if factor > 1:
            gray = gray.reduce(factor)
    if max(gray.size) > MAX_LONG_SIDE:
        scale = MAX_LONG_SIDE / max(gray.size)
        gray = gray.resize((round(gray.width * scale), round(gray.height * scale)), Image.Resampling.BOX)
    return np.asarray(gray, dtype=np.uint8)


def estimate_image(image: Image.Image) -> TextEstimate:
    """Estimate the text of a page image (scan, photo, image file) from a binarised low-resolution copy.

    Args:
        image: any PIL image; it is converted to gray and shrunk to about WORK_LONG_SIDE (``work_gray``).

    Returns:
        An estimate with source "image".
    """
    return estimate_image_array(work_gray(image))
