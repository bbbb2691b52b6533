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

from deepocr_cli.estimate import CJK_TOKENS_PER_CHAR, TextEstimate

#: Long side of the working raster (px). 1400 px is ~120 dpi on A4: 6-pt print still has a ~4-px x-height.
WORK_LONG_SIDE = 1400
#: Longest side analysed (px): larger images are shrunk to it, which bounds the time per page.
MAX_LONG_SIDE = 1800
#: Ink differs from its background by at least this many deviations of the page's pixel noise (measured from
#: neighbouring pixels): a blank page under sensor noise holds no text (sigma 8 read as ~1,800 tokens without it).
NOISE_SIGMAS = 4.0
#: Where a neighbourhood of blocks has a contrast above GRAY_TEXT_FACTOR x the paper's own spread (the 25th
#: percentile of block contrasts), its threshold lies at most GRAY_TEXT_SHARE of that contrast from the background:
#: gray print beside black print or pictures binarises whole (the page-wide contrast floor alone hid 70%-gray text
#: and broke 60%-gray text into specks).
GRAY_TEXT_FACTOR = 5.0
GRAY_TEXT_SHARE = 0.45
_BG_BLOCK = 32  # px; local background = brightest pixel of each block (handles uneven scan illumination)
_POOL = 4  # 4x4 means before taking block extremes
#: Ink runs longer than this share of the page's long side are rules, frames, bars or plot axes, not glyph strokes
#: (4% of A4's long side is 34 pt: only the strokes of display type above ~45 pt are that long).
RULE_LEN_FRAC = 0.04
#: Width of the vertical strips in which line fragments are found (px of the working raster, ~0.4 in on A4; a
#: multiple of 16: a strip is read as 16-bit words of ink bits).
STRIP = 48
#: Blank strips a line may skip (table column gaps, code comments, label-value pairs: up to ~1.6 in on A4).
LINK_GAP_STRIPS = 4
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
#: An ink gap wider than this share of the core height (x-height) is a word space: word spaces are 0.25-0.33 em
#: (0.5-0.8 x-height) in text faces, gaps between letters of a word rarely 0.15 em.
WORD_GAP_PER_CORE = 0.35
_MIN_WORD_GAP_PX = 1.5  # a 1-px gap in tiny print is anti-aliasing between letters, not a word space
_MIN_CORE_PX = 3  # below this a fragment is noise, a dot or a hairline
_MIN_DOTTED_CORE_PX = 2  # ... unless it is a row of three or more dots (leaders)
_MARK_CORE_SHARE = 0.5  # a fragment with a core under this share of its line's is all punctuation
_INK_DENSITY = (0.08, 0.65)  # ink share of a fragment's core box; solid blobs and sparse specks fall outside
_FIGURE_HEIGHT_FACTOR = 3.5  # fragments taller than this x the typical fragment are figures
_MIN_WIDTH_PER_CORE = 1.2  # a text fragment is at least about one glyph and a half wide; a plot marker is not
_MIN_SIZED_LINE = 3.0  # line heights of width a line needs to count for the smallest print
_SMALL_TEXT_QUANTILE = 0.05  # min_text_height: size at the 5th percentile of characters


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
    which tolerates uneven scan illumination. The margin is at least NOISE_SIGMAS deviations of the page's pixel
    noise, and follows the neighbourhood's own contrast where that is well above blank paper's (GRAY_TEXT_FACTOR).
    """
    h, w = gray.shape
    b, s = _BG_BLOCK, _POOL
    padded = np.pad(gray, ((0, -h % b), (0, -w % b)), mode="edge") if h % b or w % b else gray
    # 4x4 means first: sensor noise and dither average out, so block extremes measure paper and ink tones
    # (strided integer sums, rows then columns: far faster than a mean over axes (1, 3) of a 4-D view)
    rows = padded[0::s].astype(np.uint16)
    for i in range(1, s):
        rows += padded[i::s]
    sums = rows[:, 0::s].copy()
    for j in range(1, s):
        sums += rows[:, j::s]
    cells = sums.astype(np.float32) / (s * s)
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
    # pixel noise: the median absolute difference of horizontal neighbours (every 8th row; text edges are few),
    # as a standard deviation of one pixel
    diff = np.abs(np.diff(gray[::8].astype(np.int16), axis=1)).ravel()
    counts = np.cumsum(np.bincount(diff, minlength=256))
    sigma = float(np.searchsorted(counts, counts[-1] / 2)) * 1.4826 / np.sqrt(2)
    least = max(20.0, NOISE_SIGMAS * sigma)
    # a floor from the page's own contrast keeps paper texture in blank blocks from turning into specks of ink;
    # blocks whose neighbourhood holds clearly more contrast than blank paper (gray print) go by that contrast
    floor = max(least, 0.3 * abs(paper - tone))
    nrange = _nb(hi, np.maximum) - _nb(lo, np.minimum)
    spread = max(float(np.percentile(hi - lo, 25)), 2.0)
    floor = np.where(
        nrange > GRAY_TEXT_FACTOR * spread, np.maximum(least, np.minimum(floor, GRAY_TEXT_SHARE * nrange)), floor
    )
    margin = np.maximum(floor, 0.3 * nrange)
    lower = np.where(dark, -1, np.clip(bg_light - margin, -1, 255))  # ink on light: gray < lower
    upper = np.where(dark, np.clip(bg_dark + margin, 0, 256), 256)  # ink on dark: gray > upper
    # as uint8 (gray < 0 and gray > 255 are never true, so the clipped thresholds decide alike), compared one
    # block row at a time against its thresholds repeated along the row (no full-size maps, no 4-D broadcast)
    lower8 = np.clip(lower.astype(np.int16), 0, 255).astype(np.uint8)
    upper8 = np.clip(upper.astype(np.int16), 0, 255).astype(np.uint8)
    ink = np.empty(padded.shape, dtype=bool)
    for r in range(lower.shape[0]):
        g, out = padded[r * b : (r + 1) * b], ink[r * b : (r + 1) * b]
        np.less(g, np.repeat(lower8[r], b), out=out)
        if dark[r].any():
            out |= g > np.repeat(upper8[r], b)
    return ink[:h, :w]


def _runs_at_least(a: np.ndarray, n: int) -> np.ndarray:
    """Elements of ``a`` (bool) inside runs of at least ``n`` True along axis 0: an erosion, then a dilation
    back, each in log2(n) shifted ANDs / ORs of whole (contiguous) slices."""
    e, span = a, 1
    while span < n:  # e[i] = all(a[i : i + span])
        k = min(span, n - span)
        e = e[:-k] & e[k:]
        span += k
    d, span = e, 1
    while span < n:  # d[j] = any(e[j - span + 1 : j + 1])
        k = min(span, n - span)
        grown = np.zeros((d.shape[0] + k, *d.shape[1:]), dtype=bool)
        grown[:-k] = d
        grown[k:] |= d
        d, span = grown, span + k
    return d


def _drop_lines(ink: np.ndarray) -> np.ndarray:
    """Ink without long horizontal and vertical strokes (glyph strokes are at most about one em long).

    Runs are found on a 2x2 OR-pooled copy (a quarter of the work; a run there is at least half as long).
    """
    h, w = ink.shape
    limit = max(6, round(RULE_LEN_FRAC * max(h, w) / 2))
    if h % 2 or w % 2:
        ink = np.pad(ink, ((0, h % 2), (0, w % 2)))
    small = (ink[0::2] | ink[1::2]).view(np.uint16) != 0  # [h/2, w/2]: a column pair read as one uint16
    hh, ww = small.shape
    rows = np.zeros((hh, ww + 1), dtype=bool)  # rows laid end to end, a blank column ending each row's runs
    rows[:, :ww] = small
    long = _runs_at_least(rows.ravel(), limit + 1).reshape(hh, ww + 1)[:, :ww]
    long |= _runs_at_least(small, limit + 1)
    if not long.any():
        return ink[:h, :w]
    keep = (~long).view(np.uint8).astype(np.uint16) * 257  # each pooled cell's verdict for both its columns
    out = ink.copy()
    o16 = out.view(np.uint16)
    o16[0::2] &= keep
    o16[1::2] &= keep
    return out[:h, :w]


def _run_edges(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[start, end) of the True runs of a flat bool array whose rows are separated by False padding."""
    d = np.diff(flat.view(np.int8))
    return np.flatnonzero(d == 1) + 1, np.flatnonzero(d == -1) + 1


def _strip_popcount(words16: np.ndarray) -> np.ndarray:
    """Set bits per strip of each row: [h, ns * STRIP / 16] big-endian 16-bit words -> int32 [h, ns]."""
    k = STRIP // 16
    c = np.bitwise_count(words16)
    out = c[:, 0::k].astype(np.int32)
    for j in range(1, k):
        out += c[:, j::k]
    return out


def _fragments(ink: np.ndarray) -> dict[str, np.ndarray]:
    """Line fragments of all vertical strips, measured; each value is an array over fragments."""
    h, w = ink.shape
    ns = -(-w // STRIP)
    # the ink as bits, 16 columns a word (STRIP / 16 words a strip): the per-strip sums below are popcounts
    bits = np.packbits(np.pad(ink, ((0, 0), (0, ns * STRIP - w))), axis=1)  # [h, ns * STRIP / 8]
    words16 = bits.view(">u2")
    prof = _strip_popcount(words16)  # [h, ns] ink per row and strip
    # strips as rows of one flat array, each padded by an empty row on both ends
    pp = np.zeros((ns, h + 2), dtype=np.int32)
    pp[:, 1:-1] = prof.T
    flat = pp.ravel()
    starts, ends = _run_edges(flat > 0)
    # vertical ink runs starting in each row of each strip: per inked column, how many strokes a glyph stacks
    vstart = words16.copy()
    vstart[1:] &= ~words16[:-1]
    vp = np.zeros((ns, h + 2), dtype=np.int32)
    vp[:, 1:-1] = _strip_popcount(vstart).T
    vcum = np.concatenate(([0], np.cumsum(vp.ravel())))
    if len(starts) == 0:
        return {
            k: np.zeros(0)
            for k in (
                "strip", "y0", "y1", "lo", "hi", "core", "height", "width", "inked", "density", "extent", "nseg",
                "wgaps", "first", "last", "strokes", "marks", "low_marks", "high_marks",
            )
        }
    strip = starts // (h + 2)
    cum = np.concatenate(([0], np.cumsum(flat)))  # cum[i] = ink in flat[:i]
    # core: from the first to the last row inked at least half as much as the fragment's densest row. That is
    # the x-height band for Latin (ascender and descender rows hold a few stems; serifs and the bowls' tops and
    # bottoms peak at its edges) and the glyph body for CJK; it needs no line-wide statistics, so it holds for a
    # fragment of a few glyphs.
    marks = np.zeros(flat.size, dtype=np.int32)
    marks[starts] = 1
    rid = np.cumsum(marks) - 1  # run id of each flat index (valid inside runs)
    peak = np.maximum.reduceat(flat, starts)
    inside = np.zeros(flat.size + 1, dtype=np.int32)
    inside[starts] += 1
    inside[ends] -= 1
    pos = np.flatnonzero((np.cumsum(inside[:-1]) > 0) & (2 * flat >= peak[np.maximum(rid, 0)]))
    r = rid[pos]
    new_run = np.concatenate(([True], r[1:] != r[:-1]))
    last_run = np.concatenate((r[1:] != r[:-1], [True]))
    lo, hi = pos[new_run], pos[last_run] + 1
    core = hi - lo
    core_ink = cum[hi] - cum[lo]
    y0, y1 = starts - strip * (h + 2) - 1, ends - strip * (h + 2) - 1
    lo_y, hi_y = lo - strip * (h + 2) - 1, hi - strip * (h + 2) - 1
    # inked columns of each fragment's row bands (above the core, the core's top quarter, its middle, its
    # bottom quarter, below the core): one OR-reduction over the strips laid end to end
    n = len(starts)
    nb = STRIP // 8
    by_strip = np.zeros((ns * h + 1, nb), dtype=np.uint8)  # bits of each strip's rows, the strips end to end
    by_strip[:-1] = bits.reshape(h, ns, nb).transpose(1, 0, 2).reshape(ns * h, nb)
    q = np.maximum(1, core // 4)
    edges = np.stack([y0, lo_y, lo_y + q, hi_y - q, hi_y, y1], axis=1) + (strip * h)[:, None]  # [n, 6]
    ored = np.bitwise_or.reduceat(by_strip, edges.ravel(), axis=0).reshape(n, 6, nb)[:, :5]
    bands = np.unpackbits(ored, axis=2) > 0  # [n, 5, STRIP]
    bands[np.diff(edges, axis=1) <= 0] = False  # empty bands (reduceat would return their first row)
    above, top, middle, bottom, below = bands.transpose(1, 0, 2)  # each [n, STRIP]
    cols = top | middle | bottom
    padded = np.zeros((n, STRIP + 2), dtype=bool)
    padded[:, 1:-1] = cols
    s0, s1 = _run_edges(padded.ravel())
    row = s0 // (STRIP + 2)
    # marks: ink segments of the core that neither reach above or below it nor span it from its top quarter to
    # its bottom quarter (. , - = : ; ' ~ and dot leaders: each a BPE token of its own, unlike letters)
    c0, c1 = s0 - row * (STRIP + 2) - 1, s1 - row * (STRIP + 2) - 1  # column span of each segment

    def _seg_any(band: np.ndarray) -> np.ndarray:
        cum = np.zeros((n, STRIP + 1), dtype=np.int16)
        np.cumsum(band, axis=1, out=cum[:, 1:])
        return cum[row, c1] > cum[row, c0]

    outside, in_top, in_bottom = _seg_any(above) | _seg_any(below), _seg_any(top), _seg_any(bottom)
    is_mark = ~outside & ~(in_top & in_bottom)
    marks = np.bincount(row, weights=is_mark, minlength=n)
    # marks in the core's bottom quarter but not its top one, and the reverse (, . 、 。 and small kana sit low in
    # upright text, quotes high): scan preparation tells upright CJK from upside down by them
    low_marks = np.bincount(row, weights=is_mark & in_bottom, minlength=n)
    high_marks = np.bincount(row, weights=is_mark & in_top, minlength=n)
    inked = np.bincount(row, weights=s1 - s0, minlength=len(starts))
    first = np.full(len(starts), STRIP, dtype=np.int64)
    last = np.zeros(len(starts), dtype=np.int64)
    np.minimum.at(first, row, s0 - row * (STRIP + 2))
    np.maximum.at(last, row, s1 - row * (STRIP + 2))
    # gaps between ink segments: letter and word spaces count in full, wider gaps (gutters, table columns) as
    # one space
    same = row[1:] == row[:-1]
    gap = (s0[1:] - s1[:-1])[same]
    grow = row[1:][same]
    gcore = core[grow]
    spaces = np.bincount(grow, weights=np.where(gap <= 1.5 * gcore, gap, 0.5 * gcore), minlength=len(starts))
    extent = np.maximum(last - first, 1)
    nseg = np.bincount(row, minlength=len(starts))
    wgaps = np.bincount(grow, weights=gap > np.maximum(WORD_GAP_PER_CORE * gcore, _MIN_WORD_GAP_PX), minlength=len(starts))
    return {
        "strip": strip,
        "y0": y0,
        "y1": y1,
        "lo": lo_y,
        "hi": hi_y,
        "core": core.astype(np.float32),
        "height": (y1 - y0).astype(np.float32),
        "width": (inked + spaces).astype(np.float32),
        "inked": inked.astype(np.float32),
        "density": core_ink / np.maximum(core * extent, 1),
        "extent": extent.astype(np.float32),
        "nseg": nseg,
        "wgaps": wgaps,
        "first": first,
        "last": last,
        "strokes": (vcum[ends] - vcum[starts]).astype(np.float32),
        "marks": marks,
        "low_marks": low_marks,
        "high_marks": high_marks,
    }


def _link_lines(
    strip: np.ndarray, y0: np.ndarray, y1: np.ndarray, h: int
) -> tuple[np.ndarray, np.ndarray]:
    """Line id of each fragment (given in strip, then y order) and the fragment it continues (-1: none).

    A fragment whose middle row lies inside a fragment of the strip to its left continues that one's line (a
    glyph split by a blank row stays on it). One with no such neighbour continues a fragment up to
    LINK_GAP_STRIPS blank strips further left whose rows hold its middle row: table cells, numbers and code
    comments across wide column gaps stay on their row's line (the gap is a word boundary all the same)."""
    n = len(strip)
    key = strip.astype(np.int64) * (h + 1) + y0
    mid = (y0 + y1) // 2
    prev = np.full(n, -1, dtype=np.int64)
    for d in range(1, LINK_GAP_STRIPS + 2):
        todo = np.flatnonzero(prev < 0)
        if len(todo) == 0:
            break
        k = np.searchsorted(key, (strip[todo] - d).astype(np.int64) * (h + 1) + mid[todo], side="right") - 1
        kk = np.maximum(k, 0)
        linked = (k >= 0) & (strip[kk] == strip[todo] - d) & (y1[kk] > mid[todo])
        if d > 1:
            # across blank strips only: the strips in between hold nothing on this fragment's middle row
            linked &= ~_occupied(key, strip[todo] - 1, mid[todo], y1, h, strip)
        prev[todo[linked]] = kk[linked]
    parent = np.where(prev >= 0, prev, np.arange(n))
    while True:  # pointer jumping: log2(strips) rounds
        nxt = parent[parent]
        if np.array_equal(nxt, parent):
            return parent, prev
        parent = nxt


def _occupied(key: np.ndarray, s: np.ndarray, mid: np.ndarray, y1: np.ndarray, h: int, strip: np.ndarray):
    """Whether strip ``s`` holds a fragment covering row ``mid`` (arrays of queries)."""
    k = np.searchsorted(key, s.astype(np.int64) * (h + 1) + mid, side="right") - 1
    kk = np.maximum(k, 0)
    return (k >= 0) & (strip[kk] == s) & (y1[kk] > mid)


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
    """The ink the estimator reads: binarised (``_binarize``), rules and frames removed (``_drop_lines``).

    Args:
        gray: the page in gray levels (uint8 [H, W]).

    Returns:
        bool [H, W].
    """
    return _drop_lines(_binarize(gray))


def _analyse(gray: np.ndarray, ink: np.ndarray | None = None) -> tuple[TextEstimate, dict[str, np.ndarray]]:
    """The estimate and the per-fragment measures behind it (kept text fragments only: CJK or not, characters,
    word starts, ink segments and marks among them; strip and rows; line index), and per line the script
    measures (core share, strokes per column, density), for bench/calibrate_image.py. ``ink``: the page's
    ``ink_mask`` when the caller already has it (scan preparation)."""
    if ink is None:
        ink = ink_mask(gray)
    f = _fragments(ink)
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
    row_line, prev = _link_lines(strip_k, y0, y1, gray.shape[0])
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
        > np.maximum(WORD_GAP_PER_CORE * lc, _MIN_WORD_GAP_PX)
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
    small = float(em[sized][by_size][np.searchsorted(cum_chars, _SMALL_TEXT_QUANTILE * cum_chars[-1])])
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
        # for scan preparation (deepocr_cli/inputs/scan.py): rows above and below each fragment's core, and
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
