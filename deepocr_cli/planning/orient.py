"""Which way up a page's text is: a small learned classifier of text-line patches (scan preparation).

The estimator's analysis of a page read along one axis (``scan.analyse_scan``: the cleaned ink turned so that its
lines should run horizontally, and the line fragments found on it) gives where the text is and how tall its lines
are. Around each of up to MAX_PATCHES fragments a patch is cut, centred on the fragment's line, PATCH_SPAN times the
line's height tall and twice as wide, and brought to PATCH_H x PATCH_W pixels (ink share of 2x2 samples). A small
multilayer perceptron (weights in ``orient_weights.npz``, made by ``bench/train_orientation.py`` from pages it
renders itself) tells per patch by how much the reading is turned clockwise from upright: 0, 90, 180 or 270 degrees
(90 and 270: the reading runs across the text lines, its "lines" are stacks of glyph slices). The page's verdict
sums the patches' log-probabilities; ``page_rotation`` leaves a page undecided when the best turn beats the next
by less than a margin.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from deepocr_cli.planning.textlines import STRIP

#: Patch size fed to the classifier (rows, columns) and the page region it covers: PATCH_SPAN x the line's height
#: tall (ascenders and descenders with some room), twice that wide.
PATCH_H, PATCH_W = 16, 32
PATCH_SPAN = 1.3
#: At most this many patches a page (fragments taken evenly over the page); more add cost, not accuracy.
MAX_PATCHES = 96
#: Lines taller than this x the page's median line height are figures or merged lines: not cut.
MAX_LINE_FACTOR = 3.0
#: Patches are cut on lines of at least MIN_LINE_FRAGMENTS fragments when that leaves MIN_LONG_PATCHES of them.
MIN_LINE_FRAGMENTS = 3
MIN_LONG_PATCHES = 12
#: A patch's vote is log(TRUST x p + (1 - TRUST) / 4): one confidently wrong patch (a figure's detail, a speck)
#: costs at most log(4 / (1 - TRUST)) nats.
TRUST = 0.8
#: Patches classified per step (see turn_scores).
CHUNK = 32
WEIGHTS = Path(__file__).with_name("orient_weights.npz")
FORMAT = 1  # version of the weight file's layout (see load_model)


class OrientModel:
    """The patch classifier: 3x3 convolutions (ReLU, 2x2 max-pool after each), then dense layers with ReLU between
    them, softmax over the four turns.

    Attributes:
        convs: (weight [9 x in channels, out channels], bias [out]) per convolution, float32; row (dy * 3 + dx) x
            in + c of a weight is the tap at offset (dy, dx) of input channel c.
        dense: (weight [in, out], bias [out]) per dense layer, float32; the first one reads the last convolution's
            output flattened as rows x columns x channels.
        meta: how the weights were made (the weight file's info).
    """

    def __init__(self, convs: list[tuple[np.ndarray, np.ndarray]], dense: list[tuple[np.ndarray, np.ndarray]],
                 meta: dict | None = None) -> None:
        self.convs, self.dense = convs, dense
        self.meta = meta or {}

    def log_probs(self, x: np.ndarray) -> np.ndarray:
        """Log-probabilities of the four turns (0, 90, 180, 270 clockwise from upright), [P, 4], for patches
        ``x`` float32 [P, PATCH_H * PATCH_W]."""
        h = x.reshape(len(x), PATCH_H, PATCH_W, 1)
        for w, b in self.convs:
            n, rows, cols, c = h.shape
            p = np.zeros((n, rows + 2, cols + 2, c), dtype=np.float32)
            p[:, 1:-1, 1:-1] = h
            taps = np.concatenate([p[:, dy : dy + rows, dx : dx + cols] for dy in range(3) for dx in range(3)], axis=3)
            h = taps.reshape(-1, 9 * c) @ w + b
            np.maximum(h, 0, out=h)
            h = h.reshape(n, rows, cols, -1)
            h = np.maximum(np.maximum(h[:, 0::2, 0::2], h[:, 1::2, 0::2]), np.maximum(h[:, 0::2, 1::2], h[:, 1::2, 1::2]))
        h = h.reshape(len(x), -1)
        for i, (w, b) in enumerate(self.dense):
            h = h @ w + b
            if i < len(self.dense) - 1:
                np.maximum(h, 0, out=h)
        h = h - h.max(axis=1, keepdims=True)
        return h - np.log(np.exp(h).sum(axis=1, keepdims=True))


def save_model(path: Path, convs: list, dense: list, meta: dict) -> None:
    """Write a weight file load_model reads: float16 weights, float32 biases, the patch geometry and ``meta``
    (how it was made) as a JSON string; written to a temporary file and renamed."""
    import json

    arrays: dict[str, np.ndarray] = {}
    for kind, layers in (("conv", convs), ("dense", dense)):
        for i, (w, b) in enumerate(layers):
            arrays[f"{kind}{i}_w"] = np.asarray(w, dtype=np.float16)
            arrays[f"{kind}{i}_b"] = np.asarray(b, dtype=np.float32)
    info = {"format": FORMAT, "patch": [PATCH_H, PATCH_W], "span": PATCH_SPAN, "convs": len(convs),
            "dense": len(dense), **meta}
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, info=np.array(json.dumps(info)), **arrays)
    tmp.replace(path)


def load_model(path: Path = WEIGHTS) -> OrientModel:
    """Read a weight file written by save_model; raises ValueError when its layout or patch size is not this
    module's."""
    import json

    with np.load(path) as z:
        info = json.loads(str(z["info"]))
        if info.get("format") != FORMAT or info.get("patch") != [PATCH_H, PATCH_W]:
            raise ValueError(f"{path}: orientation weights of another layout ({info.get('format')}, "
                             f"{info.get('patch')})")

        def read(kind: str) -> list[tuple[np.ndarray, np.ndarray]]:
            return [(z[f"{kind}{i}_w"].astype(np.float32), z[f"{kind}{i}_b"].astype(np.float32))
                    for i in range(info[kind + "s" if kind == "conv" else kind])]

        convs, dense = read("conv"), read("dense")
    size = (PATCH_H >> len(convs)) * (PATCH_W >> len(convs)) * (convs[-1][0].shape[1] if convs else 1)
    if not dense or dense[0][0].shape[0] != size or dense[-1][0].shape[1] != 4:
        raise ValueError(f"{path}: orientation weights of the wrong shape")
    return OrientModel(convs, dense, info)


@lru_cache(maxsize=1)
def shipped_model() -> OrientModel:
    """The model shipped with deepocr (read once a process)."""
    return load_model(WEIGHTS)


def line_patches(lines: np.ndarray, detail: dict, max_patches: int = MAX_PATCHES) -> np.ndarray:
    """Patches around the text fragments of one reading of the page, float32 [P, PATCH_H * PATCH_W] (ink share).

    Args:
        lines: the reading's ink (bool [H, W]) on which ``detail`` was measured.
        detail: ``image_estimate._analyse``'s per-fragment measures of it (strip, y0, y1, line).
        max_patches: fragments taken evenly over the page when there are more.
    """
    if not detail or len(detail["line"]) == 0:
        return np.zeros((0, PATCH_H * PATCH_W), dtype=np.float32)
    line, y0, y1 = detail["line"], detail["y0"], detail["y1"]
    nl = int(line.max()) + 1
    top = np.full(nl, lines.shape[0], dtype=np.int64)
    bottom = np.zeros(nl, dtype=np.int64)
    np.minimum.at(top, line, y0)
    np.maximum.at(bottom, line, y1)
    height = (bottom - top)[line].astype(np.float64)
    # fragments on lines of several fragments: text; a lone fragment is as often a speck, a figure's detail or
    # a glyph slice. The typical line height is taken on those lines when there are enough (specks of noise on
    # a sparse page, a slide, would make it theirs and leave the text's lines out as too tall)
    several = np.bincount(line, minlength=nl)[line] >= MIN_LINE_FRAGMENTS
    typical = height[several] if np.count_nonzero(several) >= MIN_LONG_PATCHES else height
    ok = height <= MAX_LINE_FACTOR * max(float(np.median(typical)), 1.0)
    long = ok & several
    if np.count_nonzero(long) >= MIN_LONG_PATCHES:
        ok = long
    idx = np.flatnonzero(ok)
    if len(idx) > max_patches:
        idx = idx[np.linspace(0, len(idx) - 1, max_patches).round().astype(np.int64)]
    if len(idx) == 0:
        return np.zeros((0, PATCH_H * PATCH_W), dtype=np.float32)
    li = line[idx]
    ph = np.maximum(PATCH_SPAN * (bottom[li] - top[li]), 6.0)
    cy = (top[li] + bottom[li]) / 2.0
    cx = detail["strip"][idx] * STRIP + STRIP / 2.0
    # 2x2 samples a patch pixel, nearest to each sample point; outside the page reads as no ink
    fy = (np.arange(2 * PATCH_H) + 0.5) / (2 * PATCH_H) - 0.5
    fx = (np.arange(2 * PATCH_W) + 0.5) / (2 * PATCH_W) - 0.5
    rows = np.floor(cy[:, None] + fy[None, :] * ph[:, None]).astype(np.int64)  # [P, 2H]
    cols = np.floor(cx[:, None] + fx[None, :] * 2 * ph[:, None]).astype(np.int64)  # [P, 2W]
    h, w = lines.shape
    rin, cin = (rows >= 0) & (rows < h), (cols >= 0) & (cols < w)
    flat = np.clip(rows, 0, h - 1)[:, :, None] * w + np.clip(cols, 0, w - 1)[:, None, :]
    s = np.take(lines.ravel(), flat)
    s &= rin[:, :, None] & cin[:, None, :]
    u = s.view(np.uint8)
    p = u[:, 0::2, 0::2] + u[:, 1::2, 0::2] + u[:, 0::2, 1::2] + u[:, 1::2, 1::2]  # [P, H, W], 0-4
    return _without_rules(p.reshape(len(idx), -1).astype(np.float32) * np.float32(0.25))


#: A patch whose ink lies (RULE_MASS of it) within RULE_ROWS adjacent rows is a rule, the edge of a bar or a box,
#: an underline: no glyph (text's x-height alone takes a third of a patch's rows). It tells nothing of which way
#: up the text is, and the edges of dark bars, sheared straight, read as a line of something turned.
RULE_ROWS = 3
RULE_MASS = 0.9


def _without_rules(patches: np.ndarray) -> np.ndarray:
    """``patches`` [P, PATCH_H * PATCH_W] without those that are rules (see RULE_ROWS)."""
    if len(patches) == 0:
        return patches
    p = patches.reshape(len(patches), PATCH_H, PATCH_W)
    keep = np.ones(len(patches), dtype=bool)
    for profile in (p.sum(axis=2), p.sum(axis=1)):  # along the rows (a rule), along the columns (a rule across)
        c = np.concatenate([np.zeros((len(p), 1), dtype=np.float32), profile.cumsum(axis=1)], axis=1)
        band = (c[:, RULE_ROWS:] - c[:, :-RULE_ROWS]).max(axis=1)
        keep &= band < RULE_MASS * np.maximum(c[:, -1], 1e-6)
    return patches[keep]


def turn_scores(
    model: OrientModel, readings: list[tuple[int, np.ndarray]], enough: float = float("inf")
) -> tuple[np.ndarray, int]:
    """Summed log-likelihood of each page rotation (0, 90, 180, 270 clockwise, as ``ScanVerdict.rotation``) and
    the number of patches behind it.

    Args:
        model: the patch classifier.
        readings: (how far the reading is turned clockwise from the page as scanned: 0 or 90, its patches).
        enough: stop once the best rotation beats the next by this many nats: the patches go in CHUNK-sized
            steps spread over the page (every third one first), and most pages are clear after the first.
    """
    total = np.zeros(4)
    n = 0
    for turned, patches in readings:
        if len(patches) == 0:
            continue
        k = turned // 90
        order = np.concatenate([np.arange(i, len(patches), 3) for i in range(3)])
        for s in range(0, len(order), CHUNK):
            lp = model.log_probs(patches[order[s : s + CHUNK]])
            # a vote is tempered by TRUST; a page needing rotation R, read turned by T, shows its text turned by
            # T - R: class (T - R) / 90
            votes = np.log(TRUST * np.exp(lp) + (1 - TRUST) / 4).sum(axis=0)
            total += votes[(k - np.arange(4)) % 4]
            n += len(lp)
            if np.diff(np.sort(total))[-1] >= enough:
                return total, n
    return total, n


#: Light print on a dark bar (``scan._light_on_dark``) is kept for the patches only where at least BAR_SHARE of
#: the pixels within BAR_REACH px are dark: inside the bar. The paper along a bar's edge (which the bar's blocks
#: also mark as light, and which the page's skew makes a staircase of rule-like runs once sheared straight) has
#: under half of its surroundings dark, and is left out.
BAR_REACH = 6
BAR_SHARE = 0.55
#: Dark pixels with BAR_SHARE of their surroundings dark are the bar's body, not print.


def bar_text_ink(gray: np.ndarray, weak: np.ndarray, light: np.ndarray, dark_level: float) -> np.ndarray:
    """The ink the patches are cut from on a page with dark bars, bool [H, W]: ``weak`` (the cleaned ink) without
    its light-on-dark part ``light`` and without the bars' body (dark pixels with BAR_SHARE of their surroundings
    darker than ``dark_level``), plus the light pixels inside a bar (BAR_SHARE of their surroundings dark) with
    two such neighbours. This also keeps the text of a bar along the page's edge (a slide's title), which the
    cleaning drops as a scanner border's rim. Only the rows of blocks ``light`` marks are looked at; ``weak``
    itself is returned when none holds a light pixel.
    """
    lit = light.any(axis=1)
    if not lit.any():
        return weak
    r = BAR_REACH
    near = np.convolve(lit, np.ones(2 * r + 1, dtype=bool), mode="same") > 0  # rows within r of a lit row
    edges = np.flatnonzero(np.diff(np.concatenate([[0], near.view(np.int8), [0]])))
    out = weak & ~light
    for top, bottom in zip(edges[0::2], edges[1::2], strict=True):  # each run of such rows
        _bar_rows(gray[top:bottom], out[top:bottom], lit[top:bottom, None], dark_level)
    return out


def _bar_rows(gray: np.ndarray, out: np.ndarray, lit: np.ndarray, dark_level: float) -> None:
    """bar_text_ink on a run of rows: ``out`` (a view of the result) loses the bars' body and gains their text."""
    r, k = BAR_REACH, 2 * BAR_REACH + 1
    dark = gray < dark_level
    c = np.pad(dark.view(np.uint8), ((r + 1, r), (0, 0))).cumsum(axis=0, dtype=np.int16)
    c = np.pad((c[k:] - c[:-k]).astype(np.uint8), ((0, 0), (r + 1, r))).cumsum(axis=1, dtype=np.int16)
    deep = ((c[:, k:] - c[:, :-k]) >= BAR_SHARE * k * k) & lit  # BAR_SHARE of the surroundings dark
    inside = deep & ~dark
    p = np.pad(inside, 1).view(np.uint8)
    n = p[:-2] + p[1:-1] + p[2:]
    inside &= (n[:, :-2] + n[:, 1:-1] + n[:, 2:] - inside.view(np.uint8)) >= 2
    out &= ~(deep & dark)
    out |= inside
