"""Faint print under heavy noise, for the blank-page verdict (deepocr_cli.planning.scan): measures on the page
reduced 2x2, where pixel noise is halved and print keeps its strokes.

- ``line_variation``: print lines up and its strokes are sharp. Steps between neighbouring pixels of at least a
  given contrast, summed along the best line direction (+-MAX_SKEW degrees), swing from line to line along one
  axis far more than along the other. Noise makes steps everywhere (no lines); a resampled scan's beat swings
  along both axes; bleed-through from the other side is lined but blurred and faint, so its steps stay below the
  contrast; a page number or one line is too short to move it.
- ``dark_reduced_cells``: cells still dark after four pixels are averaged, against the reduced page's own noise
  (print is; the specks noise leaves on bleed-through are not).
"""

from __future__ import annotations

import numpy as np

from deepocr_cli.planning.skew import MAX_SKEW

_STRIP = 16  # reduced pixels per strip of the line search
_ANGLES = np.arange(-MAX_SKEW - 0.5, MAX_SKEW + 0.75, 0.5)  # a line stays sharp over about 0.6 degrees
_TREND = 25  # reduced pixels (two to four lines of text): slower swings are the page's layout, not its lines


def reduced(gray: np.ndarray) -> np.ndarray:
    """Sums of 2x2 pixels (int16 [H/2, W/2]): the page at half resolution, in quarter gray levels."""
    h, w = gray.shape[0] // 2 * 2, gray.shape[1] // 2 * 2
    r = gray[0:h:2, 0:w:2].astype(np.int16)
    r += gray[1:h:2, 0:w:2]
    r += gray[0:h:2, 1:w:2]
    r += gray[1:h:2, 1:w:2]
    return r


def block_sigma(a: np.ndarray, b: int = 16) -> float:
    """Noise of the paper: the 20th percentile of the deviation inside b x b blocks (blocks of print deviate far
    more, so the low quantile is the paper's)."""
    hh, ww = a.shape[0] // b * b, a.shape[1] // b * b
    if hh == 0 or ww == 0:
        return 0.0
    x = a[:hh, :ww].astype(np.float32).reshape(hh // b, b, ww // b, b)
    return float(np.sqrt(np.percentile(x.var(axis=(1, 3)), 20)))


def dark_reduced_cells(gray: np.ndarray, paper: float, min_contrast: float, noise_k: float, cell: int,
                       min_pixels: int) -> np.ndarray:
    """Cells of ``cell`` x ``cell`` reduced pixels (bool [H/2/cell, W/2/cell]) holding at least ``min_pixels``
    reduced pixels darker than the paper by ``min_contrast`` gray levels and by ``noise_k`` deviations of the
    reduced page's noise."""
    red = reduced(gray)
    level = max(min_contrast, noise_k * block_sigma(red) / 4)
    dark = red <= 4 * (paper - level)
    hh, ww = dark.shape[0] // cell * cell, dark.shape[1] // cell * cell
    return dark[:hh, :ww].reshape(hh // cell, cell, ww // cell, cell).sum(axis=(1, 3)) >= min_pixels


def _dispersion(steps: np.ndarray) -> float:
    """How far the per-line sums of ``steps`` (float32 [H, W]) swing from line to line along their best direction
    (rows, +-MAX_SKEW): the variance of the sums less their running mean over _TREND lines (the text block's
    margins and the page's shading are no lines), over the mean sum (counts of scattered steps swing about as much
    as their mean)."""
    h, w = steps.shape
    ns = w // _STRIP
    if ns == 0:
        return 0.0
    prof = steps[:, : ns * _STRIP].reshape(h, ns, _STRIP).sum(axis=2)
    mean = float(prof.mean()) * ns
    xc = (np.arange(ns) + 0.5) * _STRIP - w / 2
    shifts = np.rint(np.tan(np.radians(_ANGLES))[:, None] * xc[None, :]).astype(np.int64)
    m = int(np.abs(shifts).max()) + 1
    if h <= 2 * (m + _TREND) + 8 or mean <= 0:
        return 0.0
    padded = np.zeros((h + 2 * m, ns), dtype=np.float32)
    padded[m : m + h] = prof - prof.mean(axis=0)
    windows = np.lib.stride_tricks.sliding_window_view(padded, h, axis=0)  # [2m + 1, ns, h]
    cols = np.arange(ns)
    box = np.full(_TREND, 1 / _TREND, dtype=np.float32)
    best = 0.0
    for sh in shifts:
        line = windows[m + sh, cols].sum(axis=0)[m : h - m]  # rows near the ends: not all strips overlap there
        swing = (line - np.convolve(line, box, mode="same"))[_TREND:-_TREND]
        best = max(best, float(swing.var()))
    return best / mean


def line_variation(gray: np.ndarray, masked: np.ndarray, step: float, noise_k: float) -> float:
    """Sharp steps (at least ``step`` gray levels and ``noise_k`` deviations of the reduced page's noise between
    neighbours on the page reduced 2x2: under heavy noise only the steps that stand out of it) lined up along one
    axis only: ``_dispersion`` along the rows against along the columns, the larger over the smaller (at least 1).
    Lines of print swing along one axis; scattered noise along neither; the beat a resampled scan shows (MuPDF
    drawing a scan at another scale makes its noise sharper every few pixels) along both. ``masked`` (bool
    [H, W]): pixels left out (counted at the page's mean rate, so that they make no line of their own)."""
    red = reduced(gray)
    step = max(step, noise_k * block_sigma(red) / 4)
    grad = np.abs(red[:-1, 1:] - red[:-1, :-1])
    grad += np.abs(red[1:, :-1] - red[:-1, :-1])
    steps = (grad >= 4 * step).astype(np.float32)
    rim = masked[0 : 2 * steps.shape[0] : 2, 0 : 2 * steps.shape[1] : 2]
    if rim.any():
        steps[rim] = float(steps[~rim].mean()) if not rim.all() else 0.0
    rows, cols = _dispersion(steps), _dispersion(np.ascontiguousarray(steps.T))
    return max(rows, cols) / max(min(rows, cols), 1.0)
