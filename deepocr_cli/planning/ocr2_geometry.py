"""DeepSeek-OCR-2 view geometry and token counts (facts §8.2). Pure arithmetic: no torch, no PIL.

OCR-2 has one dynamic mode: a 1024x1024 global view (256 query tokens) plus 0 or 2..6 tiles of
768x768 (144 each), chosen by v1's grid rule with 768-px tiles; a page whose sides both fit in 768
is not tiled. The decoder receives 256 + 144*k + 1 embeddings (the last is the view separator).

The per-page budget is a tile cap: ``max_tiles`` 0 keeps only the global view (257 embeddings);
2..6 lets the grid rule pick up to that many tiles.
"""

from __future__ import annotations

from deepocr_cli.planning.modes import tile_grid

#: Global-view side and tile side of the released model.
OCR2_BASE = 1024
OCR2_TILE = 768
#: Query tokens per view: (side / 16 / 4) ** 2.
GLOBAL_TOKENS = (OCR2_BASE // 64) ** 2  # 256
TILE_TOKENS = (OCR2_TILE // 64) ** 2  # 144
#: Tile-count bounds of the official runners (MIN_CROPS / MAX_CROPS).
OCR2_MIN_TILES = 2
OCR2_MAX_TILES = 6
#: Tile caps the auto budget walks, cheapest first (0 = global view only).
TILE_CAPS: tuple[int, ...] = (0, 2, 3, 4, 5, 6)


def ocr2_grid(
    width: int, height: int, max_tiles: int = OCR2_MAX_TILES, min_tiles: int = OCR2_MIN_TILES
) -> tuple[int, int]:
    """Tile grid (nw, nh) of an image, (1, 1) when untiled (both sides <= 768, or a cap below 2).

    Raises:
        ValueError: non-positive size or tile bounds outside 1 <= min <= max <= 9.
    """
    if max_tiles < max(2, min_tiles):
        if width <= 0 or height <= 0:
            raise ValueError(f"image size must be positive, got {width}x{height}")
        return (1, 1)
    return tile_grid(width, height, min_tiles, max_tiles, OCR2_TILE)


def ocr2_embeddings(grid: tuple[int, int]) -> int:
    """`<image>` placeholders of a page with this grid: 256 + 144*k + 1."""
    k = grid[0] * grid[1]
    return GLOBAL_TOKENS + (TILE_TOKENS * k if k > 1 else 0) + 1


def ocr2_vision_tokens(grid: tuple[int, int]) -> int:
    """The paper's vision-token count (256 + 144*k, without the separator), for compression ratios."""
    return ocr2_embeddings(grid) - 1


def ocr2_render_size(
    width: float, height: float, max_tiles: int = OCR2_MAX_TILES, max_pixels: int = 16_000_000
) -> tuple[int, int]:
    """Pixel size to render a page (any unit) so the global view and the tiles lose nothing.

    The long side reaches 1024; when tiled (grid taken at 144 dpi for points, as for v1), the
    768*nw x 768*nh tile canvas is covered too. Capped at ``max_pixels``.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"page size must be positive, got {width}x{height}")
    scale = OCR2_BASE / max(width, height)
    nw, nh = ocr2_grid(round(width * 2), round(height * 2), max_tiles)
    if nw * nh > 1:
        scale = max(scale, OCR2_TILE * nw / width, OCR2_TILE * nh / height)
    if width * height * scale * scale > max_pixels:
        scale = (max_pixels / (width * height)) ** 0.5
    return max(1, round(width * scale)), max(1, round(height * scale))
