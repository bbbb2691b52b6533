"""DeepSeek-OCR model package: load a checkpoint and prepare requests; generation is deepocr_cli.engine (imports torch)."""

from __future__ import annotations

from deepocr_cli.model.engine import NGramConfig, OcrEngine, PreparedRequest, load_engine
from deepocr_cli.model.testing import write_random_checkpoint

__all__ = [
    "NGramConfig",
    "OcrEngine",
    "PreparedRequest",
    "load_engine",
    "write_random_checkpoint",
]
