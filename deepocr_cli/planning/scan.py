"""Scan preparation: is a page blank, which way up is it, how skewed; and the transform that maps boxes back.

Everything here is a pure function of a gray page raster at the text estimator's resolution (``work_gray``), and
reads the same ink the estimator reads (``ink_mask``: binarised against the local background and the page's
noise, rules and frames removed), so that blank pages, turned pages and skewed pages are judged on one analysis:

1. Skew and axis: per vertical strip of the ink (the estimator's strips), the row profile; the strips' profiles
   shifted by x * tan(angle) and summed give the page's row profile at that angle, which is sharpest (sum of
   squares) when the text lines lie along it. Searched coarse to fine over +-MAX_SKEW degrees, on the ink and on
   its transpose: the page is read along the axis whose best profile is sharpest (line gaps are wider than
   letter gaps, in CJK too; on code, tables and reference cards a close call).
2. The ink is turned so that its lines should run horizontally and sheared straight, and the text estimator's own
   analysis runs on it: its characters and lines decide the blank verdict; patches cut around its fragments go
   to a small learned classifier (deepocr_cli.planning.orient) that tells, summed over the page, by how much that
   reading is turned from upright: 0 or 180 degrees, or 90 / 270 when the profiles' axis runs across the lines.
3. A page is blank when no patch of ink that stands out of the page's noise is left outside its margins (punch
   holes and scanner borders lie in them; a page number or a short line makes three cells and more), none is
   still there on the page reduced 2x2 (bleed-through's specks are not), and no faint print lines up under the
   noise (``deepocr_cli.planning.faint``: sharp steps lined up; bleed-through is blurred). A page with nothing
   BLANK_MIN_CONTRAST darker than its paper is blank at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from deepocr_cli.planning.faint import dark_reduced_cells, line_variation
from deepocr_cli.planning.image_estimate import ink_mask, work_gray
from deepocr_cli.planning.orient import bar_text_ink, line_patches, shipped_model, turn_scores
from deepocr_cli.planning.skew import MAX_SKEW, MIN_SKEW, Reading, read_straight

#: Orientation (deepocr_cli.planning.orient): the best rotation's summed log-likelihood over the page's patches
#: must beat the next one's by ORIENT_MARGIN (nats), on at least ORIENT_MIN_PATCHES patches, else undecided.
ORIENT_MARGIN = 4.0
ORIENT_MIN_PATCHES = 6
#: ... and by ORIENT_MARGIN_PER_ROOT * sqrt(patches): patches that tell nothing (light print drowned in noise)
#: still sum to a margin that grows like the square root of their number, so a fixed margin alone lets a page of
#: 150 such patches be turned the wrong way with "7 nats". Readable pages reach 5 per root patch and more,
#: noise-drowned ones 0.1-1.4 (clean CJK, whose patches each say less, 1.3-1.8): those are left as they are
#: (undecided) rather than turned at a guess. The retry on the raw ink, noisier by nature, needs
#: ORIENT_RAW_PER_ROOT.
ORIENT_MARGIN_PER_ROOT = 1.0
ORIENT_RAW_PER_ROOT = 1.5
#: When reading along the sharper axis leaves the margin under this, the page is also read along the other axis
#: (close calls: code, tables, CJK set on a square grid) and both readings' patches vote.
ORIENT_SECOND_READING = 12.0
#: A page the cleaned ink leaves undecided is read again on the estimator's raw ink (see _orientation).
ORIENT_RAW_INK = True
#: A reading whose margin reaches ORIENT_ENOUGH on its first patches is not read further (most pages: about a
#: third of the classifier's cost).
ORIENT_ENOUGH = 30.0
#: Blank pages are judged on the ink that stands out of the page's noise: at least BLANK_MIN_CONTRAST gray
#: levels darker than the paper (bleed-through from the other side is fainter, light-grey print darker) and at
#: least NOISE_K deviations of the paper's own texture (measured in 32-px blocks, which sees the blotches JPEG
#: makes of sensor noise, not only pixel-to-pixel noise), with at least two inked neighbours (specks have none).
BLANK_MIN_CONTRAST = 40.0
NOISE_K = 3.5
#: Ink patches: 8x8-px cells of the working raster holding at least CELL_MIN_INK pixels of that ink, outside the
#: outer MARGIN_FRAC of the page. More than BLANK_MAX_CELLS of them (a page number split across the estimator's
#: strips, a stamp, a signature, a figure) keep the page from being blank.
CELL = 8
CELL_MIN_INK = 8
BLANK_MAX_CELLS = 2
MARGIN_FRAC = 0.02
#: Print too faint to stand out of heavy noise pixel by pixel still lines up, and its strokes are sharp: on the
#: page reduced 2x2 (which halves pixel noise), steps of at least LINE_STEP gray levels (and NOISE_K deviations of
#: the reduced page's noise) between neighbouring pixels, summed along the best line direction, swing from line to line LINED_MIN times more along one axis than
#: along the other (deepocr_cli.planning.faint). Noise steps are everywhere; a resampled scan's beat swings along
#: both axes; bleed-through from the other side is blurred and faint, its steps stay below LINE_STEP; a page
#: number or a line is too short to matter (the cells decide those). On the bench's seed 18, as arrays and drawn
#: by MuPDF at 0.7x, 1x and 1.8x: blank scans up to 2.05, light-grey print (60-75%) under heavy noise 5.1 and up.
LINE_STEP = 40
LINED_MIN = 3.0
#: Pages with at most this many content cells have them confirmed on the page reduced 2x2 (SURE_CELL_INK of a
#: cell's 16 reduced pixels at least the ink level darker than the paper, that level taken from the reduced page's
#: own noise): print stays dark when four pixels are averaged, specks of noise on bleed-through do not.
SURE_MAX_CELLS = 150
SURE_CELL_INK = 1
#: Paper noise (gray levels) below which two characters found by the estimator are text whatever their size, when
#: some content cell holds print.
CLEAN_NOISE = 4.0
#: Punch holes and scanner borders: cells darker than DARK_CELL x the paper inside the band of EDGE_BAND x the
#: page's short side along each edge (holes sit 8-15 mm in, borders at the edge); the ink within RIM_CELLS cells
#: of them is their rim, not print.
DARK_CELL = 0.45
EDGE_BAND = 0.09
#: how far (cells) the rim reaches: two, because a hole's edge can lie 11 px from its nearest fully dark cell, and
#: a scan drawn at another scale (a PDF page rendered) blurs and widens it
RIM_CELLS = 2
#: Light print on dark bars (slide themes, table heads, inverted titles): the estimator's ink is polarity-aware, so
#: a pixel at least BLANK_MIN_CONTRAST lighter than its BAR_BLOCK-px block's mean, in a block DARK_BAR_CONTRAST
#: darker than the paper, with both its neighbours along the row as dark (a bar, not a bold word), is print too
#: (it was dropped as "not dark" before, and so were the slide's lines).
BAR_BLOCK = 16
DARK_BAR_CONTRAST = 80.0
BAR_CHANGED = 0.02  # dark bars' text, not edges, is read for orientation when that changes this much of the ink
#: Pages with fewer dark pixels than this are first checked for a blank shortcut (no dark pixel with two dark
#: neighbours: nothing can be kept, the binarisation is skipped); pages of print have far more.
BLANK_SHORTCUT_PIXELS = 20000


@dataclass(frozen=True)
class ScanVerdict:
    """What scan preparation found on one page.

    Attributes:
        blank: the page holds no text and no figure.
        blank_measure: the measures behind the verdict (text characters and lines found, figure cells, ink
            contrast and edge sharpness).
        rotation: degrees clockwise the page must turn to be upright: 0, 90, 180 or 270.
        orientation: "upright", "turned", "undecided" (left as it is), "off" (not looked at) or "blank".
        orientation_score: the classifier's margin behind the decision: how many nats the chosen rotation's
            summed log-likelihood beats the next one's by (below ORIENT_MARGIN when undecided; 0 when off).
        skew: angle of the text lines in degrees after the turn, positive when they descend to the right; the
            page is straightened by turning it that much counter-clockwise. 0 when off or below MIN_SKEW.
    """

    blank: bool
    blank_measure: dict
    rotation: int = 0
    orientation: str = "off"
    orientation_score: float = 0.0
    skew: float = 0.0

    def to_json(self) -> dict:
        """JSON form recorded on each page (``scan``)."""
        return {
            "blank": self.blank,
            "blank_measure": self.blank_measure,
            "rotation": self.rotation,
            "orientation": self.orientation,
            "orientation_score": round(self.orientation_score, 3),
            "skew": round(self.skew, 2),
        }


# --------------------------------------------------------------------------- skew and axis


def _texture_sigma(gray: np.ndarray) -> float:
    """Noise of the paper: the 20th percentile of the gray-level deviation inside 32-px blocks (every other
    pixel); blocks of print deviate far more, so the low quantile is the paper's."""
    s = gray[::2, ::2]
    hh, ww = s.shape[0] // 16 * 16, s.shape[1] // 16 * 16
    if hh == 0 or ww == 0:
        return 0.0
    b = s[:hh, :ww].astype(np.int32).reshape(hh // 16, 16, ww // 16, 16)
    s1 = b.sum(axis=(1, 3), dtype=np.int64).astype(np.float64)
    s2 = (b * b).sum(axis=(1, 3), dtype=np.int64).astype(np.float64)
    var = np.maximum(s2 / 256 - (s1 / 256) ** 2, 0.0)
    return float(np.sqrt(np.percentile(var, 20)))


def _with_neighbours(ink: np.ndarray, n: int = 2) -> np.ndarray:
    """Ink pixels with at least ``n`` inked pixels among their eight neighbours."""
    p = np.pad(ink, 1).view(np.uint8)
    r = p[:-2] + p[1:-1] + p[2:]
    return ink & ((r[:, :-2] + r[:, 1:-1] + r[:, 2:] - ink.view(np.uint8)) >= n)


def _dark_cells(gray: np.ndarray, paper: float, level: float) -> tuple[np.ndarray, int]:
    """Pixels within one cell of a dark cell in the edge band (punch holes, scanner borders, and their rims), bool
    [H, W]; and the number of cells inside the band whose mean is ``level`` darker than the paper, as their four
    neighbours are (a photo, a filled shape, a stamp: content even where the binarised ink is only its outline)."""
    h, w = gray.shape
    c, k = CELL, CELL // 2  # cells measured on every other pixel
    hh, ww = -(-h // c) * c, -(-w // c) * c
    g = np.pad(gray, ((0, hh - h), (0, ww - w)), mode="edge")[::2, ::2]
    sums = g.reshape(hh // c, k, ww // c, k).sum(axis=(1, 3), dtype=np.int32)
    band = max(1, round(EDGE_BAND * min(h, w) / c))
    inner = sums[band:-band, band:-band] < (paper - level) * k * k
    # only the inside of a toned patch counts (a cell whose four neighbours are toned too): specks of pepper
    # noise or a blotch darken a cell or two, a photo or a filled shape of 5 mm a block of them
    core = inner[1:-1, 1:-1] & inner[:-2, 1:-1] & inner[2:, 1:-1] & inner[1:-1, :-2] & inner[1:-1, 2:]
    toned = int(np.count_nonzero(core))
    dark = sums < DARK_CELL * paper * k * k
    dark[band:-band, band:-band] = False
    if not dark.any():
        return np.zeros((h, w), dtype=bool), toned
    r = RIM_CELLS
    p = np.pad(dark, r)
    near = np.zeros(dark.shape, dtype=bool)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            near |= p[dy : dy + dark.shape[0], dx : dx + dark.shape[1]]
    return np.repeat(np.repeat(near, c, axis=0), c, axis=1)[:h, :w], toned


def _light_on_dark(gray: np.ndarray, paper: float) -> np.ndarray | None:
    """Pixels that are light print on a dark bar (see DARK_BAR_CONTRAST), bool [H, W]; None when the page has no
    dark block (the common case: nothing to add)."""
    h, w = gray.shape
    b = BAR_BLOCK
    hh, ww = h // b * b, w // b * b
    if hh == 0 or ww == 0:
        return None
    k = b // 4  # every fourth pixel: a bar is even, its mean needs few samples
    means = gray[:hh:4, :ww:4].reshape(hh // b, k, ww // b, k).sum(axis=(1, 3), dtype=np.int32) / (k * k)
    dark = means < paper - DARK_BAR_CONTRAST
    # a bar is wide: a block counts with both its neighbours along the row dark too (a bold word is not a bar)
    dark[:, 1:-1] &= dark[:, :-2] & dark[:, 2:]
    dark[:, [0, -1]] = False
    if not dark.any():
        return None
    level = np.where(dark, np.clip(means + BLANK_MIN_CONTRAST, 0, 256), 256).astype(np.int16)
    out = np.zeros((h, w), dtype=bool)
    for r in np.flatnonzero(dark.any(axis=1)):
        out[r * b : (r + 1) * b, :ww] = gray[r * b : (r + 1) * b, :ww] > np.repeat(level[r], b)
    return out


def clean_ink(gray: np.ndarray, ink: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """``_clean``'s weak and strong ink and measures (see there)."""
    return _clean(gray, ink)[:3]


def _clean(
    gray: np.ndarray, ink: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, dict, np.ndarray | None, np.ndarray | None]:
    """The estimator's ink without specks, faint marks (bleed-through) and the rims of punch holes and scanner
    borders (``weak``), the part of it that stands out of the paper's noise (``strong``; see NOISE_K), and the
    measures used. ``ink``: the estimator's ink mask (``ink_mask(gray)``), computed here only when some pixel of
    the page could be kept (on a blank page none is: no pixel is BLANK_MIN_CONTRAST darker than the paper with
    two such neighbours, so the binarisation is skipped and the result is the same). Also returned: the light
    print on dark bars (``_light_on_dark``, None without bars) and the estimator's ink (None when skipped)."""
    cum = np.cumsum(np.bincount(gray[::4, ::4].ravel(), minlength=256))
    paper = float(np.searchsorted(cum, cum[-1] / 2))
    sigma = _texture_sigma(gray)
    level = max(BLANK_MIN_CONTRAST, NOISE_K * sigma)
    faint = np.uint8(max(paper - BLANK_MIN_CONTRAST, 0))
    edges, toned = _dark_cells(gray, paper, level)
    printed = gray <= faint
    light = _light_on_dark(gray, paper)
    if light is not None:
        printed |= light
    printed &= ~edges
    # "print": some pixel is BLANK_MIN_CONTRAST darker than the paper with two such neighbours
    dark_print = bool(np.count_nonzero(printed) >= BLANK_SHORTCUT_PIXELS or _with_neighbours(printed).any())
    measures = {"paper": round(paper), "noise": round(sigma, 1), "ink_level": round(level), "toned_cells": toned,
                "print": dark_print}
    # a superset of the kept ink (ink & printed) is empty: so is it (looked at only where little is dark at all)
    if not dark_print:
        empty = np.zeros(gray.shape, dtype=bool)
        return empty, empty, measures, light, ink
    if ink is None:
        ink = ink_mask(gray)
    weak = _with_neighbours(ink & printed)
    strong = weak & (gray <= np.uint8(max(paper - level, 0)))
    if light is not None:
        strong |= weak & light
    return weak, strong, measures, light, ink


def _content_cells(strong: np.ndarray) -> int:
    """Cells holding print (see CELL_MIN_INK), outside the margin band."""
    h, w = strong.shape
    c = CELL
    my, mx = round(MARGIN_FRAC * h), round(MARGIN_FRAC * w)
    core = strong[my : h - my, mx : w - mx]
    if not core.any():
        return 0
    hh, ww = core.shape[0] // c * c, core.shape[1] // c * c
    if hh == 0 or ww == 0:
        return 0
    count = core[:hh, :ww].reshape(hh // c, c, ww // c, c).sum(axis=(1, 3))
    return int(np.count_nonzero(count >= CELL_MIN_INK))


def sure_cells(gray: np.ndarray, strong: np.ndarray, paper: float) -> int:
    """Content cells (see _content_cells) whose print is still dark on the page reduced 2x2 (SURE_CELL_INK)."""
    ok = dark_reduced_cells(gray, paper, BLANK_MIN_CONTRAST, NOISE_K, CELL // 2, SURE_CELL_INK)
    sure = np.zeros(strong.shape, dtype=bool)
    up = np.repeat(np.repeat(ok, CELL, axis=0), CELL, axis=1)[: strong.shape[0], : strong.shape[1]]
    sure[: up.shape[0], : up.shape[1]] = up
    return _content_cells(strong & sure)


def black_cells(gray: np.ndarray, noise: dict) -> int:
    """Content cells of print twice the ink level darker than the paper (with two such neighbours, outside the
    edges' holes and borders), whatever the estimator's ink says: on a nearly empty noisy page its binarisation
    can take a page number's block for a dark one and keep the paper around the digits instead of them."""
    paper, level = float(noise["paper"]), float(noise["ink_level"])
    black = gray <= np.uint8(max(paper - 2 * level, 0))
    if not black.any():
        return 0
    black &= ~_dark_cells(gray, paper, level)[0]
    return _content_cells(_with_neighbours(black))


def lined_print(gray: np.ndarray, paper: float) -> float:
    """The line measure of LINED_MIN, the rims of punch holes and scanner borders left out."""
    return line_variation(gray, _dark_cells(gray, paper, BLANK_MIN_CONTRAST)[0], LINE_STEP, NOISE_K)


# --------------------------------------------------------------------------- the verdict


def blank_at_once(noise: dict) -> bool:
    """Blank without further analysis (``clean_ink``'s measures): nothing on the page is BLANK_MIN_CONTRAST
    darker than its paper with two such neighbours (so no ink is kept, no character found, no line lined up) and
    no toned patch; the full verdict is blank as well."""
    return not noise["print"] and noise["toned_cells"] == 0


def analyse_scan(gray: np.ndarray, *, blank: bool = True, rotate: bool = True, deskew: bool = True) -> ScanVerdict:
    """Judge one page raster: blank or not, which way up, how skewed.

    Args:
        gray: the page in gray levels at about the estimator's resolution (``work_gray``), uint8 [H, W].
        blank: look for a blank page (when off, ``blank`` is always False).
        rotate: find the orientation (when off, ``rotation`` is 0 and ``orientation`` "off").
        deskew: find the skew (when off, ``skew`` is 0).

    Returns:
        The verdict; apply it with ``deepocr_cli.planning.upright.prepare_page``.
    """
    weak, strong, noise, light, ink = _clean(gray)
    if blank and blank_at_once(noise):  # the verdict below would be blank too; skip the line search
        measure = {"text_chars": 0, "text_lines": 0, "structure": 1.0, "content_cells": 0, **noise, "black_cells": 0}
        return ScanVerdict(True, measure, 0, "blank" if rotate else "off", 0.0, 0.0)
    page = Reading.of(weak, rotate)
    est = page.est
    measure: dict = {"text_chars": est.chars, "text_lines": est.lines, "structure": round(page.structure, 3)}
    is_blank = False
    if blank:
        cells = _content_cells(strong)
        measure.update(content_cells=cells, **noise)
        is_blank = noise["toned_cells"] == 0 and cells <= SURE_MAX_CELLS
        if is_blank and cells > BLANK_MAX_CELLS:  # print stays dark on the page reduced 2x2, noise specks do not
            measure["sure_cells"] = sure_cells(gray, strong, noise["paper"])
            is_blank = measure["sure_cells"] <= BLANK_MAX_CELLS
        if is_blank and noise["noise"] < CLEAN_NOISE and est.chars >= 2:
            # on a clean page (a born-digital image, a quiet scanner) nothing fakes characters: with a patch of
            # print, however small, they are text (pepper specks and bleed-through fill no cell)
            is_blank = cells == 0
        if is_blank and cells <= BLANK_MAX_CELLS:
            measure["black_cells"] = black_cells(gray, noise)
            is_blank = measure["black_cells"] <= BLANK_MAX_CELLS
        if is_blank and noise["print"]:  # faint print lines up (nothing to line up where nothing is dark)
            measure["lined"] = round(lined_print(gray, noise["paper"]), 2)
            is_blank = measure["lined"] < LINED_MIN
    if is_blank:
        return ScanVerdict(True, measure, 0, "blank" if rotate else "off", 0.0, 0.0)
    if not rotate:
        return ScanVerdict(False, measure, 0, "off", 0.0, _skew(page.angle, deskew))
    # dark bars (slide titles, table heads): their text is read, not their skewed edges (orient.bar_text_ink)
    bars = weak if light is None else bar_text_ink(gray, weak, light, noise["paper"] - DARK_BAR_CONTRAST)
    if np.count_nonzero(bars ^ weak) > BAR_CHANGED * np.count_nonzero(weak):
        page = Reading.of(bars)
    # read along the sharper axis: the classifier tells which way up the text is, and also when that axis runs
    # across the lines (a close call: code, tables, reference cards), which the profiles cannot
    rotation, orientation, score, skew = _orientation(gray, page, ink, deskew)
    return ScanVerdict(False, measure, rotation, orientation, score, skew)


def _skew(angle: float, deskew: bool) -> float:
    """The skew corrected for lines at ``angle``: none when off or outside MIN_SKEW..MAX_SKEW."""
    return angle if deskew and MIN_SKEW <= abs(angle) <= MAX_SKEW else 0.0


def _margin(scores: np.ndarray, n: int) -> float:
    """How many nats the best rotation's score beats the next one's by (0 without patches)."""
    return float(np.diff(np.sort(scores))[-1]) if n else 0.0


def _orientation(
    gray: np.ndarray, page: Reading, ink: np.ndarray | None, deskew: bool
) -> tuple[int, str, float, float]:
    """Rotation, orientation, score and skew from the learned patch classifier (``orient``; see _vote): the
    rotation whose summed log-likelihood beats the next by ORIENT_MARGIN, on at least ORIENT_MIN_PATCHES patches,
    else "undecided" (rotation 0; the skew of lines known to run along the rows, else none). A page the cleaned
    ink leaves undecided is read again on the estimator's raw ink (``ink``, computed here when None): light print
    under heavy noise loses most of its pixels to the cleaning. The skew is the angle measured along the axis the
    rotation puts the lines on; the score is the margin (nats)."""
    scores, n = _vote(page)
    margin = _margin(scores, n)
    if not _decided(margin, n) and ORIENT_RAW_INK:
        ink = ink_mask(gray) if ink is None else ink
        if ink.any():
            raw = Reading.of(ink)
            raw_scores, raw_n = _vote(raw)
            if _decided(_margin(raw_scores, raw_n), raw_n, ORIENT_RAW_PER_ROOT):
                page, scores, n, margin = raw, raw_scores, raw_n, _margin(raw_scores, raw_n)
    if not _decided(margin, n):
        return 0, "undecided", margin, _skew(page.angle, deskew) if page.axis_rows else 0.0
    rotation = 90 * int(np.argmax(scores))
    skew = _skew(page.a_rows if rotation in (0, 180) else page.a_cols, deskew)
    return rotation, "upright" if rotation == 0 else "turned", margin, skew


def _decided(margin: float, patches: int, per_root: float = ORIENT_MARGIN_PER_ROOT) -> bool:
    """Whether a reading's margin (nats) over ``patches`` patches is clear enough to turn the page."""
    return patches >= ORIENT_MIN_PATCHES and margin >= max(ORIENT_MARGIN, per_root * patches ** 0.5)


def _vote(page: Reading) -> tuple[np.ndarray, int]:
    """The classifier's summed log-likelihood of each rotation and its number of patches, on the page read along
    its sharper axis, and also along the other axis when that first reading leaves the margin under
    ORIENT_SECOND_READING (close calls: code, tables, CJK set on a square grid)."""
    model = shipped_model()
    readings = [(0 if page.axis_rows else 90, line_patches(page.lines, page.detail))]
    scores, n = turn_scores(model, readings, ORIENT_ENOUGH)
    if float(np.diff(np.sort(scores))[-1]) < ORIENT_SECOND_READING and page.ink.any():
        other, _, detail2 = read_straight(page.ink, not page.axis_rows, page.a_cols if page.axis_rows else page.a_rows)
        readings.append((90 if page.axis_rows else 0, line_patches(other, detail2)))
        scores, n = turn_scores(model, readings)
    return scores, n


def analyse_image(image: Image.Image, *, blank: bool = True, rotate: bool = True, deskew: bool = True) -> ScanVerdict:
    """:func:`analyse_scan` on any page image, reduced to the estimator's resolution first."""
    return analyse_scan(work_gray(image), blank=blank, rotate=rotate, deskew=deskew)
