"""DeepSeek-OCR model package: load a checkpoint and run batched OCR generation (imports torch)."""

from __future__ import annotations

from deepocr_cli.model.engine import GenerationResult, NGramConfig, OcrEngine, PreparedRequest, load_engine
from deepocr_cli.model.testing import write_random_checkpoint

__all__ = [
    "GenerationResult",
    "NGramConfig",
    "OcrEngine",
    "PreparedRequest",
    "load_engine",
    "write_random_checkpoint",
]
