"""The generation engine: a continuous-batching scheduler over a paged KV cache (imports torch)."""

from __future__ import annotations

from deepocr_cli.engine.metrics import EngineMetrics
from deepocr_cli.engine.scheduler import EngineRequest, FinishedSequence, Scheduler, kv_budget_bytes

__all__ = ["EngineMetrics", "EngineRequest", "FinishedSequence", "Scheduler", "kv_budget_bytes"]
