"""Pick the cheapest DeepSeek-OCR mode that keeps a page's text legible and its compression ratio on target."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from deepocr_cli.planning.estimate import TextEstimate
from deepocr_cli.planning.families import V1
from deepocr_cli.planning.modes import (
    DEFAULT_MAX_TILES,
    DEFAULT_MIN_TILES,
    GUNDAM_TILE,
    MODE_ORDER,
    MODE_SPECS,
    Mode,
)

if TYPE_CHECKING:
    from deepocr_cli.planning.families import ModelFamily

log = logging.getLogger(__name__)

#: Smallest font size (em, px) in the model's view that we accept. Facts §7.2-7.3 (OmniDocBench): newspapers, with
#: ~8-pt print on ~22-inch pages, score edit distance 0.645 in Base (em ~5 px) and 0.353 in Large (~6.5 px) but 0.122
#: in Gundam (~10 px from 640-px tiles); academic papers (9.5 pt on 11 in) are as good in Base (~12 px, 0.052) as in
#: Gundam (0.039). So text stays legible from about 9-10 px per em; 9 px is one x-height of ~4.5 px, a quarter of
#: a 16-px SAM patch less than a third of which carries ink.
MIN_TEXT_PX = 9.0
#: Long/short side beyond which only Gundam is considered: Base/Large pad such a page into a square (most vision
#: tokens see padding) and Tiny/Small stretch it by more than 2.5x (facts §3.2).
ELONGATED_ASPECT = 2.5
#: An estimate below this many tokens is an empty page.
EMPTY_TOKENS = 1.0
#: Planning safety factor per estimate source: a mode is chosen for ``tokens x factor``, so that an estimate
#: that falls short of the page's true count still lands under the target. Text layer: the 90th percentile of
#: true / estimated tokens over the estimator's calibration set (leave-one-out, 80 texts; see
#: deepocr_cli.planning.estimate), i.e. ~90% of pages are not under-counted by more than this. The image path is left at
#: 1 (its error is measured by bench/density.py; escalation catches what it misses).
PLAN_SAFETY = {"text_layer": 1.13, "image": 1.0}


@dataclass(frozen=True)
class ModeChoice:
    """The mode chosen for one page.

    Attributes:
        mode: the resolution mode.
        grid: Gundam tile grid (nw, nh); (1, 1) otherwise.
        vision_tokens: the paper's vision-token count for this mode and grid.
        predicted_ratio: estimated text tokens per vision token.
        reason: why this mode (for logs and the JSON report).
    """

    mode: Mode
    grid: tuple[int, int]
    vision_tokens: int
    predicted_ratio: float
    reason: str

    def to_json(self) -> dict:
        """Plain JSON-serialisable dict."""
        return {
            "mode": str(self.mode),
            "grid": list(self.grid),
            "vision_tokens": self.vision_tokens,
            "predicted_ratio": round(self.predicted_ratio, 3),
            "reason": self.reason,
        }


def _allowed(min_mode: Mode, max_mode: Mode) -> list[Mode]:
    lo, hi = MODE_ORDER.index(min_mode), MODE_ORDER.index(max_mode)
    if lo > hi:
        raise ValueError(f"min_mode {min_mode} is above max_mode {max_mode}")
    return list(MODE_ORDER[lo : hi + 1])


def text_px(mode: Mode, width: float, height: float, min_text_height: float, grid: tuple[int, int]) -> float:
    """Height in model pixels of text whose size is ``min_text_height`` x the page's longer side.

    Tiny/Small stretch the page to a square and Base/Large pad it, so the long side maps to the mode's side
    (the short side of a stretched page gains pixels, but glyph widths shrink: the long side is the binding one).
    Gundam tiles map the page onto 640*nw x 640*nh; the sharper of tiles and 1024-px global view counts.
    """
    spec = MODE_SPECS[mode]
    long_side = max(width, height)
    scale = spec.base_size / long_side
    if spec.crop_mode and grid[0] * grid[1] > 1:
        scale = max(scale, min(GUNDAM_TILE * grid[0] / width, GUNDAM_TILE * grid[1] / height))
    return min_text_height * long_side * scale


def choose_mode(
    est: TextEstimate,
    width: float,
    height: float,
    *,
    max_compression: float = 10.0,
    min_mode: Mode = Mode.TINY,
    max_mode: Mode = Mode.GUNDAM,
    min_tiles: int = DEFAULT_MIN_TILES,
    max_tiles: int = DEFAULT_MAX_TILES,
    safety: float | None = None,
    family: ModelFamily = V1,
) -> ModeChoice:
    """Choose the cheapest allowed mode meeting the compression target and the legibility floor.

    Args:
        est: the page's text estimate.
        width: page width (PDF points, or pixels for images).
        height: page height, same unit.
        max_compression: largest acceptable text tokens per vision token (~97% precision below 10, facts §7.1).
        min_mode: cheapest mode allowed.
        max_mode: most expensive mode allowed.
        min_tiles: Gundam tile-count lower bound.
        max_tiles: Gundam tile-count upper bound.
        safety: the mode must keep ``tokens x safety`` at or below the target; default PLAN_SAFETY of the
            estimate's source. ``predicted_ratio`` stays the plain estimate / vision tokens.
        family: the model's geometry (DeepSeek-OCR-2: the modes are tile caps, see deepocr_cli.planning.families).

    Returns:
        The choice; when no allowed mode meets both conditions, the most expensive allowed one with a reason
        starting "over budget" (compression) or "text too small" (legibility).
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"page size must be positive, got {width}x{height}")
    if max_compression <= 0:
        raise ValueError("max_compression must be positive")
    modes = _allowed(min_mode, max_mode)
    if safety is None:
        safety = PLAN_SAFETY.get(est.source, 1.0)
    if safety <= 0:
        raise ValueError("safety must be positive")
    limit = max_compression / safety  # largest predicted ratio a mode may be chosen with

    def make(mode: Mode, reason: str) -> ModeChoice:
        rw, rh = family.render_size(mode, width, height, min_tiles, max_tiles)
        grid = family.grid_for(mode, rw, rh, min_tiles, max_tiles)
        vt = family.vision_tokens(mode, grid)
        return ModeChoice(mode, grid, vt, est.tokens / vt, reason)

    if est.tokens < EMPTY_TOKENS:
        return make(modes[0], "empty page")
    aspect = max(width, height) / min(width, height)
    if aspect > ELONGATED_ASPECT and Mode.GUNDAM in modes:
        choice = make(Mode.GUNDAM, f"elongated page (aspect {aspect:.1f} > {ELONGATED_ASPECT})")
        if choice.predicted_ratio > limit:
            return replace(choice, reason="over budget; " + choice.reason)
        return choice

    small_text = False
    for mode in modes:
        choice = make(mode, "")
        px = (
            None
            if est.min_text_height is None
            else family.text_px(mode, width, height, est.min_text_height, choice.grid)
        )
        if choice.predicted_ratio > limit:
            continue
        if px is not None and px < MIN_TEXT_PX:
            small_text = True
            continue
        why = f"ratio {choice.predicted_ratio:.1f} <= {max_compression:g}"
        if safety != 1.0:
            why += f" with {safety:g}x safety"
        if px is not None:
            why += f", smallest text {px:.1f} px >= {MIN_TEXT_PX:g}"
        if small_text:
            why += " (cheaper modes make the smallest text illegible)"
        return ModeChoice(choice.mode, choice.grid, choice.vision_tokens, choice.predicted_ratio, why)

    last = make(modes[-1], "")
    reason = "over budget" if last.predicted_ratio > limit else "text too small"
    log.debug("no mode meets the targets (%s); using %s", reason, last.mode)
    return ModeChoice(
        last.mode,
        last.grid,
        last.vision_tokens,
        last.predicted_ratio,
        f"{reason}: ratio {last.predicted_ratio:.1f} in the largest allowed mode",
    )


def next_mode(mode: Mode, max_mode: Mode = Mode.GUNDAM) -> Mode | None:
    """The next more expensive mode to retry with, or None past ``max_mode``."""
    i = MODE_ORDER.index(mode) + 1
    if i >= len(MODE_ORDER) or i > MODE_ORDER.index(max_mode):
        return None
    return MODE_ORDER[i]


def needs_escalation(
    truncated: bool, actual_ratio: float | None, target: float, margin: float = 1.25
) -> bool:
    """Whether a page's output calls for a retry in a larger mode.

    Args:
        truncated: the output ended without EOS or in a repetition loop.
        actual_ratio: generated text tokens per vision token, if known.
        target: the compression target the mode was chosen for.
        margin: tolerated overshoot of the target (the estimate is approximate).

    Returns:
        True when truncated or the actual ratio exceeds target * margin.
    """
    return truncated or (actual_ratio is not None and actual_ratio > target * margin)
