"""Generation: the continuous-batching scheduler over a paged KV cache, and the engine built on it (imports torch)."""

from __future__ import annotations

from deepocr_cli.engine.metrics import EngineMetrics
from deepocr_cli.engine.ocr import Engine, GenerationResult, load_engine
from deepocr_cli.engine.scheduler import EngineRequest, FinishedSequence, Scheduler, kv_budget_bytes

__all__ = [
    "Engine",
    "EngineMetrics",
    "EngineRequest",
    "FinishedSequence",
    "GenerationResult",
    "Scheduler",
    "kv_budget_bytes",
    "load_engine",
]
