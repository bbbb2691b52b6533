"""Skew and text direction of a page's ink: the angle (and axis) at which its text lines' profiles are sharpest,
searched coarse to fine over +-MAX_SKEW degrees (see deepocr_cli.planning.scan)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from deepocr_cli.planning.image_estimate import _analyse
from deepocr_cli.planning.textlines import STRIP, strip_popcount

MAX_SKEW = 10.0
_COARSE_STEP = 0.5  # degrees; a line of text stays sharp over about atan(line height / page width) = 0.6 deg
_FINE_STEP = 0.1
#: Skews below this (degrees) are left alone: straightening them would only resample the page.
MIN_SKEW = 0.15


def profiles(ink: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row profile of each vertical strip (int32 [H, strips]) and the strips' centres' x from the page centre."""
    h, w = ink.shape
    ns = -(-w // STRIP)
    bits = np.packbits(np.pad(ink, ((0, 0), (0, ns * STRIP - w))), axis=1)
    prof = strip_popcount(bits.view(">u2"))
    xc = (np.arange(ns) + 0.5) * STRIP - w / 2
    return prof, xc


def column_profiles(ink: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``_profiles`` of the transposed ink without transposing it: the column profile of each horizontal strip
    (int32 [W, strips]) and the strips' centres' y from the page centre."""
    h, w = ink.shape
    ns = -(-h // STRIP)
    padded = np.zeros((ns * STRIP, w), dtype=bool)
    padded[:h] = ink
    prof = padded.view(np.uint8).reshape(ns, STRIP, w).sum(axis=1, dtype=np.int32).T
    return np.ascontiguousarray(prof), (np.arange(ns) + 0.5) * STRIP - h / 2


def sharpness(prof: np.ndarray, xc: np.ndarray, angles: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Sum of squares of the page profile with each strip shifted by x * tan(angle) (angles in degrees);
    ``scale``: rows per profile bin (a pooled profile)."""
    h, ns = prof.shape
    shifts = np.rint(np.tan(np.radians(angles))[:, None] * xc[None, :] / scale).astype(np.int64)  # [A, ns]
    m = int(np.abs(shifts).max(initial=0))
    padded = np.zeros((h + 2 * m, ns), dtype=np.int64)
    padded[m : m + h] = prof
    # windows[j] = padded[j : j + h] for every start j (a view): each angle gathers one window per strip
    windows = np.lib.stride_tricks.sliding_window_view(padded, h, axis=0)  # [2m + 1, ns, h]
    out = np.empty(len(angles))
    cols = np.arange(ns)
    for i, sh in enumerate(shifts):
        p = windows[m + sh, cols].sum(axis=0)
        out[i] = float(np.dot(p, p))
    return out


def pool_rows(prof: np.ndarray) -> np.ndarray:
    h = prof.shape[0] // 2 * 2
    return prof[0:h:2] + prof[1:h:2]


def search_skew(prof: np.ndarray, xc: np.ndarray) -> tuple[float, float, float]:
    """Best angle (degrees), its sharpness normalised (sum of squares x inked bins / ink^2), and the median
    normalised sharpness over the coarse angles; coarse on a row-pooled profile, fine on the full one."""
    coarse = np.arange(-MAX_SKEW - _COARSE_STEP, MAX_SKEW + 1.5 * _COARSE_STEP, _COARSE_STEP)
    pooled = pool_rows(prof)
    sc = sharpness(pooled, xc, coarse, scale=2.0)
    best = float(coarse[int(np.argmax(sc))])
    fine = best + np.arange(-_COARSE_STEP, _COARSE_STEP + _FINE_STEP / 2, _FINE_STEP)
    sf = sharpness(prof, xc, fine)
    k = int(np.argmax(sf))
    angle = float(fine[k])
    if 0 < k < len(sf) - 1:  # parabola through the peak and its neighbours
        a, b, c = sf[k - 1], sf[k], sf[k + 1]
        den = a - 2 * b + c
        if den < 0:
            angle += 0.5 * (a - c) / den * _FINE_STEP
    total = float(prof.sum())
    inked = max(int(np.count_nonzero(prof.sum(axis=1))), 1)
    norm = inked / max(total * total, 1.0)
    return angle, float(sf[k]) * norm, float(np.median(sc)) * 2 * norm


def straighten(ink: np.ndarray, axis_rows: bool, angle: float) -> np.ndarray:
    """The ink with its lines horizontal: turned clockwise when they run along the columns, then sheared."""
    lines = ink if axis_rows else np.ascontiguousarray(np.rot90(ink, -1))
    return shear(lines, angle) if MIN_SKEW <= abs(angle) <= MAX_SKEW else lines


def shear(ink: np.ndarray, angle: float) -> np.ndarray:
    """The ink with each column shifted up by x * tan(angle): lines at ``angle`` become horizontal (a shear; for
    10 degrees or less it differs from a rotation by under 2% in glyph shape)."""
    h, w = ink.shape
    shifts = np.rint(np.tan(np.radians(angle)) * (np.arange(w) - w / 2)).astype(np.int64)
    m = int(np.abs(shifts).max(initial=0))
    if m == 0:
        return ink
    out = np.zeros((h + 2 * m, w), dtype=bool)
    # columns sharing a shift are copied together
    change = np.flatnonzero(np.diff(shifts)) + 1
    for a, b in zip(np.r_[0, change], np.r_[change, w], strict=True):
        s = int(shifts[a])
        out[m - s : m - s + h, a:b] = ink[:, a:b]
    return out


# --------------------------------------------------------------------------- blank


def line_axes(ink: np.ndarray, rotate: bool = True) -> tuple[bool, float, float, float]:
    """Which way the lines of ``ink`` (bool [H, W]) run and at what angle: whether along the rows (the axis whose
    profiles are sharper; always the rows when ``rotate`` is off), the structure (the sharper axis' score over
    the other's), and the lines' angle measured along the rows and along the columns (the latter as the page
    turned clockwise would show it)."""
    if not ink.any():
        return True, 1.0, 0.0, 0.0
    a_rows, s_rows, _ = search_skew(*profiles(ink))
    a_cols, s_cols, _ = search_skew(*column_profiles(ink))
    # a_cols is the lines' angle on the transpose; turned clockwise instead (mirrored), it flips
    structure = max(s_rows, s_cols) / max(min(s_rows, s_cols), 1e-9)
    return not rotate or s_rows >= s_cols, structure, a_rows, -a_cols


@dataclass
class Reading:
    """Ink read along its lines: which axis they run along and at what angle (``line_axes``), the ink turned and
    sheared so that they run straight along the rows (``lines``), and the estimator's analysis of that."""

    ink: np.ndarray
    axis_rows: bool
    structure: float
    a_rows: float
    a_cols: float
    lines: np.ndarray
    est: Any
    detail: dict

    @classmethod
    def of(cls, ink: np.ndarray, rotate: bool = True) -> Reading:
        axis_rows, structure, a_rows, a_cols = line_axes(ink, rotate)
        lines, est, detail = read_straight(ink, axis_rows, a_rows if axis_rows else a_cols)
        return cls(ink, axis_rows, structure, a_rows, a_cols, lines, est, detail)

    @property
    def angle(self) -> float:
        """The lines' angle along the axis they are read on."""
        return self.a_rows if self.axis_rows else self.a_cols


def read_straight(ink: np.ndarray, axis_rows: bool, angle: float) -> tuple[np.ndarray, Any, dict]:
    """``ink`` turned and sheared so that lines at ``angle`` along that axis run along the rows, and the
    estimator's estimate and fragments of it."""
    lines = straighten(ink, axis_rows, angle)
    est, detail = _analyse(np.broadcast_to(np.uint8(0), lines.shape), ink=lines)
    return lines, est, detail
