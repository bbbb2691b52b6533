"""Line fragments per vertical strip and their linking into text lines (steps 3 and 4 of the image estimator;
see deepocr_cli.planning.image_estimate)."""

from __future__ import annotations

import numpy as np

#: Width of the vertical strips in which line fragments are found (px of the working raster, ~0.4 in on A4; a
#: multiple of 16: a strip is read as 16-bit words of ink bits).
STRIP = 48
#: Blank strips a line may skip (table column gaps, code comments, label-value pairs: up to ~1.6 in on A4).
LINK_GAP_STRIPS = 4

#: An ink gap wider than this share of the core height (x-height) is a word space: word spaces are 0.25-0.33 em
#: (0.5-0.8 x-height) in text faces, gaps between letters of a word rarely 0.15 em.
WORD_GAP_PER_CORE = 0.35
MIN_WORD_GAP_PX = 1.5  # a 1-px gap in tiny print is anti-aliasing between letters, not a word space


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


def fragments(ink: np.ndarray) -> dict[str, np.ndarray]:
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
    wgaps = np.bincount(grow, weights=gap > np.maximum(WORD_GAP_PER_CORE * gcore, MIN_WORD_GAP_PX), minlength=len(starts))
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


def link_lines(
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
