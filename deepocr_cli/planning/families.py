"""Model families (DeepSeek-OCR v1 and DeepSeek-OCR-2): page geometry and token counts per mode.

Planning, the converter and the engine ask the family instead of calling :mod:`deepocr_cli.modes`
directly, so one pipeline serves both models. Pure arithmetic plus a config.json peek: no torch.

**Modes under OCR-2.** OCR-2 has one dynamic resolution (1024 global view + 0 or 2..6 tiles of 768).
Its cost is set by the tile cap, and the five mode names are reused as the cap ladder, so auto mode,
``--min-mode/--max-mode`` and escalation work unchanged: tiny = global view only (257 embeddings),
small = up to 2 tiles, base = 3, large = 4, gundam = ``--max-tiles`` (6 by default, the official
setting). The grid rule then picks the tiles within the cap.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from deepocr_cli.planning import modes as v1
from deepocr_cli.planning import ocr2_geometry as g2
from deepocr_cli.planning.modes import Mode

log = logging.getLogger(__name__)

#: Tile cap of each mode under OCR-2 (gundam: --max-tiles).
OCR2_MODE_CAPS: dict[Mode, int | None] = {
    Mode.TINY: 0,
    Mode.SMALL: 2,
    Mode.BASE: 3,
    Mode.LARGE: 4,
    Mode.GUNDAM: None,
}


class V1Family:
    """DeepSeek-OCR: five fixed modes (facts §3)."""

    name = "deepseek-ocr"
    #: no-repeat n-gram window for image inputs when it differs from --ngram-window (None: the same)
    image_ngram_window: int | None = None

    def grid_for(
        self, mode: Mode, width: int, height: int, min_tiles: int = 2, max_tiles: int = 6
    ) -> tuple[int, int]:
        """Tile grid of a page of this pixel size in ``mode``."""
        return v1.grid_for(mode, width, height, min_tiles, max_tiles)

    def vision_tokens(self, mode: Mode, grid: tuple[int, int]) -> int:
        """The paper's vision-token count (compression ratios are measured against it)."""
        return v1.vision_tokens(mode, grid)

    def image_embeddings(self, mode: Mode, grid: tuple[int, int]) -> int:
        """`<image>` placeholders the decoder receives."""
        return v1.image_embeddings(mode, grid)

    def render_size(
        self, mode: Mode, width: float, height: float, min_tiles: int = 2, max_tiles: int = 6
    ) -> tuple[int, int]:
        """Pixel size to render a page of this size (points or pixels) in ``mode``."""
        return v1.render_size(mode, width, height, min_tiles, max_tiles)

    def text_px(
        self, mode: Mode, width: float, height: float, min_text_height: float, grid: tuple[int, int]
    ) -> float:
        """Height in model pixels of the page's smallest text (see autoplan.text_px)."""
        from deepocr_cli.planning.autoplan import text_px

        return text_px(mode, width, height, min_text_height, grid)


class Ocr2Family:
    """DeepSeek-OCR-2: one dynamic mode; the mode names set the tile cap (module docstring)."""

    name = "deepseek-ocr-2"
    #: the official OCR-2 image runner blocks 20-grams over a window of 90 (its PDF runner: 50, as v1; facts §8)
    image_ngram_window: int | None = 90

    @staticmethod
    def tile_cap(mode: Mode, max_tiles: int = g2.OCR2_MAX_TILES) -> int:
        """Most tiles a page may get in ``mode`` (0: global view only)."""
        cap = OCR2_MODE_CAPS[Mode(mode)]
        return max_tiles if cap is None else min(cap, max_tiles)

    def grid_for(
        self, mode: Mode, width: int, height: int, min_tiles: int = 2, max_tiles: int = 6
    ) -> tuple[int, int]:
        """Tile grid of a page of this pixel size under the mode's tile cap."""
        return g2.ocr2_grid(width, height, self.tile_cap(mode, max_tiles), min_tiles)

    def vision_tokens(self, mode: Mode, grid: tuple[int, int]) -> int:
        """256 + 144*k."""
        return g2.ocr2_vision_tokens(grid)

    def image_embeddings(self, mode: Mode, grid: tuple[int, int]) -> int:
        """256 + 144*k + 1."""
        return g2.ocr2_embeddings(grid)

    def render_size(
        self, mode: Mode, width: float, height: float, min_tiles: int = 2, max_tiles: int = 6
    ) -> tuple[int, int]:
        """Pixel size covering the 1024 global view and the tile canvas of the mode's cap."""
        return g2.ocr2_render_size(width, height, self.tile_cap(mode, max_tiles))

    def text_px(
        self, mode: Mode, width: float, height: float, min_text_height: float, grid: tuple[int, int]
    ) -> float:
        """Smallest text in model pixels: the sharper of the 1024 global view and the 768-px tiles."""
        long_side = max(width, height)
        scale = g2.OCR2_BASE / long_side
        if grid[0] * grid[1] > 1:
            scale = max(scale, min(g2.OCR2_TILE * grid[0] / width, g2.OCR2_TILE * grid[1] / height))
        return min_text_height * long_side * scale


V1 = V1Family()
OCR2 = Ocr2Family()
ModelFamily = V1Family | Ocr2Family


def config_is_ocr2(data: dict[str, Any]) -> bool:
    """Whether a parsed config.json describes DeepSeek-OCR-2 (original or transformers-native layout)."""
    if data.get("model_type") == "deepseek_ocr2":
        return True
    vision = data.get("vision_config")
    archs = data.get("architectures") or []
    widths = vision.get("width") if isinstance(vision, dict) else None
    return (
        any("OCR2" in str(a) or "Ocr2" in str(a) for a in archs)
        or (isinstance(vision, dict) and vision.get("model_name") == "deepencoderv2")
        or (isinstance(widths, dict) and "qwen2-0-5b" in widths)
    )


def family_of(model: str, revision: str | None = None) -> ModelFamily:
    """The family of a model id or folder without loading it (and without network access).

    A folder's config.json decides; for a hub id the cached config.json if any, else the name
    ("OCR-2" / "OCR2" in it means OCR-2).
    """
    data = None
    local = Path(model).expanduser()
    config = local / "config.json" if local.is_dir() else None
    if config is None and str(model).count("/") == 1:
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(str(model), "config.json", revision=revision)
            config = Path(cached) if isinstance(cached, str) else None
        except Exception:  # noqa: BLE001 - a cache peek must never fail planning
            config = None
    if config is not None and config.is_file():
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None
    if isinstance(data, dict):
        return OCR2 if config_is_ocr2(data) else V1
    name = str(model).lower().replace("_", "-")
    return OCR2 if "ocr-2" in name or "ocr2" in name else V1
