"""Ink masks of page rasters: polarity-aware local binarisation, and removal of rules, frames and axes
(steps 1 and 2 of the image estimator; see deepocr_cli.planning.image_estimate)."""

from __future__ import annotations

import numpy as np

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


def _nb(grid: np.ndarray, fn) -> np.ndarray:
    """3x3 neighbourhood reduction (np.maximum / np.minimum) of a small block grid."""
    p = np.pad(grid, 1, mode="edge")
    out = p[1:-1, 1:-1].copy()
    for i in range(3):
        for j in range(3):
            out = fn(out, p[i : i + grid.shape[0], j : j + grid.shape[1]])
    return out


def binarize(gray: np.ndarray) -> np.ndarray:
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


def runs_at_least(a: np.ndarray, n: int) -> np.ndarray:
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


def drop_lines(ink: np.ndarray) -> np.ndarray:
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
    long = runs_at_least(rows.ravel(), limit + 1).reshape(hh, ww + 1)[:, :ww]
    long |= runs_at_least(small, limit + 1)
    if not long.any():
        return ink[:h, :w]
    keep = (~long).view(np.uint8).astype(np.uint16) * 257  # each pooled cell's verdict for both its columns
    out = ink.copy()
    o16 = out.view(np.uint16)
    o16[0::2] &= keep
    o16[1::2] &= keep
    return out[:h, :w]
