"""The five DeepSeek-OCR resolution modes: sizes, Gundam tiling and token counts (facts §3).

Pure arithmetic, no torch and no PIL, so every stage (planning, rendering, preprocessing,
reporting) shares one definition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class Mode(StrEnum):
    """A resolution mode, spelled as users type it."""

    TINY = "tiny"
    SMALL = "small"
    BASE = "base"
    LARGE = "large"
    GUNDAM = "gundam"


#: Cheapest to most expensive; escalation walks this order.
MODE_ORDER: tuple[Mode, ...] = (Mode.TINY, Mode.SMALL, Mode.BASE, Mode.LARGE, Mode.GUNDAM)

#: One SAM patch is 16 px and the compressor halves twice: one vision token per 64x64 px.
PIXELS_PER_TOKEN_SIDE = 64
#: Gundam tile side (the released model is only trained with 640-px tiles).
GUNDAM_TILE = 640
#: Tile-count bounds of the official vLLM runner (MIN_CROPS/MAX_CROPS); the HF path uses 2..9.
DEFAULT_MIN_TILES = 2
DEFAULT_MAX_TILES = 6
#: Largest tile count the model was trained with (paper: "2 to 9").
MAX_ALLOWED_TILES = 9


@dataclass(frozen=True)
class ModeSpec:
    """Geometry of one mode.

    Attributes:
        mode: the mode.
        base_size: side of the global view fed to the encoder.
        image_size: tile side (Gundam) or native side (other modes).
        crop_mode: whether the page is tiled (Gundam only).
        stretch: the global view is stretch-resized (Tiny, Small) instead of aspect-preserving padding.
    """

    mode: Mode
    base_size: int
    image_size: int
    crop_mode: bool
    stretch: bool


MODE_SPECS: dict[Mode, ModeSpec] = {
    Mode.TINY: ModeSpec(Mode.TINY, 512, 512, False, True),
    Mode.SMALL: ModeSpec(Mode.SMALL, 640, 640, False, True),
    Mode.BASE: ModeSpec(Mode.BASE, 1024, 1024, False, False),
    Mode.LARGE: ModeSpec(Mode.LARGE, 1280, 1280, False, False),
    Mode.GUNDAM: ModeSpec(Mode.GUNDAM, 1024, GUNDAM_TILE, True, False),
}


def candidate_grids(min_tiles: int, max_tiles: int) -> list[tuple[int, int]]:
    """All (nw, nh) tile grids with min_tiles <= nw*nh <= max_tiles, fewest tiles first.

    The order inside one tile count is the one the reference implementation iterates in,
    which matters only for exact aspect-ratio ties.
    """
    grids = {
        (i, j)
        for n in range(min_tiles, max_tiles + 1)
        for i in range(1, n + 1)
        for j in range(1, n + 1)
        if min_tiles <= i * j <= max_tiles
    }
    return sorted(grids, key=lambda g: g[0] * g[1])


def tile_grid(
    width: int,
    height: int,
    min_tiles: int = DEFAULT_MIN_TILES,
    max_tiles: int = DEFAULT_MAX_TILES,
    tile: int = GUNDAM_TILE,
) -> tuple[int, int]:
    """Gundam tile grid (nw, nh) for an image, or (1, 1) when it is not tiled.

    Tiling is skipped when both sides are <= the tile side. Otherwise the grid whose
    aspect ratio nw/nh is closest to width/height wins; on an exact tie a later (larger)
    grid replaces the earlier one only if the image area exceeds half the grid's area.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if not 1 <= min_tiles <= max_tiles <= MAX_ALLOWED_TILES:
        raise ValueError(f"tile bounds must satisfy 1 <= min <= max <= {MAX_ALLOWED_TILES}")
    if width <= tile and height <= tile:
        return (1, 1)
    aspect = width / height
    area = width * height
    best, best_diff = (1, 1), math.inf
    for nw, nh in candidate_grids(min_tiles, max_tiles):
        diff = abs(aspect - nw / nh)
        if diff < best_diff:
            best, best_diff = (nw, nh), diff
        elif diff == best_diff and area > 0.5 * tile * tile * nw * nh:
            best = (nw, nh)
    return best


def grid_for(
    mode: Mode, width: int, height: int, min_tiles: int = DEFAULT_MIN_TILES, max_tiles: int = DEFAULT_MAX_TILES
) -> tuple[int, int]:
    """Tile grid of a page in a mode: (1, 1) for every mode but a tiled Gundam page."""
    if mode is not Mode.GUNDAM:
        return (1, 1)
    return tile_grid(width, height, min_tiles, max_tiles)


def image_embeddings(mode: Mode, grid: tuple[int, int] = (1, 1)) -> int:
    """Number of `<image>` placeholder ids (= vision embeddings the decoder receives).

    Global view: h rows of h tokens plus one newline per row; tiles: (nh*g) rows of (nw*g)
    tokens plus a newline per row; one view separator at the end (facts §1.4, §3.2).
    """
    spec = MODE_SPECS[mode]
    h = spec.base_size // PIXELS_PER_TOKEN_SIDE
    n = h * (h + 1) + 1
    nw, nh = grid
    if spec.crop_mode and nw * nh > 1:
        g = spec.image_size // PIXELS_PER_TOKEN_SIDE
        n += (nh * g) * (nw * g + 1)
    return n


def vision_tokens(mode: Mode, grid: tuple[int, int] = (1, 1)) -> int:
    """The paper's vision-token count (64/100/256/400/256+100n), used for compression ratios."""
    spec = MODE_SPECS[mode]
    n = (spec.base_size // PIXELS_PER_TOKEN_SIDE) ** 2
    nw, nh = grid
    if spec.crop_mode and nw * nh > 1:
        n += nw * nh * (spec.image_size // PIXELS_PER_TOKEN_SIDE) ** 2
    return n


def render_size(
    mode: Mode,
    width: float,
    height: float,
    min_tiles: int = DEFAULT_MIN_TILES,
    max_tiles: int = DEFAULT_MAX_TILES,
    max_pixels: int = 16_000_000,
) -> tuple[int, int]:
    """Pixel size to render a page of the given aspect (any unit) so the mode loses nothing.

    Non-tiled modes need the long side at the mode's side; Gundam needs the tile canvas
    (640*nw x 640*nh) covered and the long side at least 1024. The grid is computed on the
    page as the official runner renders it (144 dpi when width/height are PDF points).
    The pixel count is capped at ``max_pixels``.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"page size must be positive, got {width}x{height}")
    spec = MODE_SPECS[mode]
    scale = spec.base_size / max(width, height)
    if spec.crop_mode:
        ref_w, ref_h = round(width * 2), round(height * 2)  # 144 dpi for points
        nw, nh = tile_grid(ref_w, ref_h, min_tiles, max_tiles)
        if nw * nh > 1:
            scale = max(scale, GUNDAM_TILE * nw / width, GUNDAM_TILE * nh / height)
    if width * height * scale * scale > max_pixels:
        scale = math.sqrt(max_pixels / (width * height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def compression_ratio(text_tokens: float, mode: Mode, grid: tuple[int, int] = (1, 1)) -> float:
    """Text tokens per vision token: ~97% precision below 10x, ~60% at 20x (facts §7.1)."""
    return text_tokens / vision_tokens(mode, grid)
