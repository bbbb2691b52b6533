"""What travels between the driver and a worker: page images with how to prepare them, and the answers.

Inputs are shipped, not shared: the driver reads and renders every document (it holds the lock and the
checkpoint anyway) and sends page images; a worker needs no access to the inputs or the outputs, only to the
model (a hub id it can download, or a folder that exists on its machine).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

from deepocr_cli.planning.modes import Mode


@dataclass(frozen=True)
class EngineSpec:
    """How a worker loads its engine (everything picklable)."""

    model: str
    revision: str | None = None
    device: str = "auto"
    dtype: str | None = None
    memory_budget_bytes: int | None = None
    cuda_graphs: bool = False

    def with_device(self, device: str) -> EngineSpec:
        """The same spec on another device."""
        return dataclasses.replace(self, device=device)

    def load(self) -> Any:
        """Load the engine this spec names (in the worker)."""
        from deepocr_cli.engine import load_engine

        return load_engine(self.model, revision=self.revision, device=self.device, dtype=self.dtype,
                           memory_budget_bytes=self.memory_budget_bytes, cuda_graphs=self.cuda_graphs)


@dataclass(frozen=True)
class PageImage:
    """An RGB page image as plain bytes: what crosses to a worker (no file name, no handle, no metadata)."""

    size: tuple[int, int]
    data: bytes

    @classmethod
    def of(cls, rgb: Any) -> PageImage:
        """Copy the pixels of an RGB PIL image."""
        return cls(rgb.size, rgb.tobytes())

    def to_pil(self) -> Any:
        """The image again, in the worker."""
        from PIL import Image

        return Image.frombytes("RGB", self.size, self.data)


@dataclass(frozen=True)
class ImageInfo:
    """What the runner reads of a prepared image before it is prepared: its mode, grid and embedding count."""

    mode: Mode
    grid: tuple[int, int]
    num_embeddings: int


@dataclass
class RemotePrepared:
    """A request prepared lazily: the page image and its preparation settings; the worker makes the tensors."""

    pixels: PageImage
    image: ImageInfo
    prompt: str
    min_tiles: int
    max_tiles: int
    tag: object = None
    max_new_tokens: int | None = None
    ngram_window: int | None = None  # this request's no-repeat window (None: the run's)

    @classmethod
    def of(cls, image: Any, mode: Mode, prompt: str, min_tiles: int, max_tiles: int, tag: object = None,
           family: Any = None) -> RemotePrepared:
        """Describe ``image`` prepared in ``mode`` without preparing it (the grid is the one the model family's
        preparation uses: v1's tiles, or OCR-2's tile cap)."""
        from deepocr_cli.model.image_processing import to_rgb
        from deepocr_cli.planning.families import V1

        family = family or V1
        rgb = to_rgb(image)
        mode = Mode(mode)
        grid = family.grid_for(mode, *rgb.size, min_tiles, max_tiles)
        info = ImageInfo(mode, grid, family.image_embeddings(mode, grid))
        return cls(PageImage.of(rgb), info, prompt, min_tiles, max_tiles, tag)


@dataclass
class Task:
    """One request on its way to a worker (no tag: the runner's objects stay in the driver)."""

    id: int
    pixels: PageImage
    mode: str
    prompt: str
    min_tiles: int
    max_tiles: int
    ngram_window: int | None = None

    @classmethod
    def of(cls, task_id: int, request: RemotePrepared) -> Task:
        """The task of a lazily prepared request."""
        return cls(task_id, request.pixels, request.image.mode.value, request.prompt, request.min_tiles,
                   request.max_tiles, request.ngram_window)


@dataclass
class TaskError:
    """A request that produced no answer: its image could not be prepared, or it kept killing workers.

    It stands in for a generation result, so it carries the fields a result has (empty)."""

    stage: str  # "preprocess" | "worker"
    message: str
    tag: object = None
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    generated_tokens: int = 0
    truncated: bool = False
    seconds: float = 0.0
    error: str | None = None  # the engine's own error field (out of memory); not used for these


@dataclass
class BatchStats:
    """What one batch cost a worker."""

    requests: int = 0
    generated_tokens: int = 0
    busy_s: float = 0.0
    metrics: Any = None  # the engine's own counters so far (EngineMetrics), when it keeps them


def run_tasks(engine: Any, tasks: list[Task], max_new_tokens: int, batch_size: int | None, ngram: Any
              ) -> tuple[list[Any], BatchStats]:
    """Prepare and generate a batch of tasks with one engine (in a worker); results in task order."""
    t0 = time.perf_counter()
    out: list[Any] = [None] * len(tasks)
    prepared, where = [], []
    for i, t in enumerate(tasks):
        try:
            request = engine.prepare(t.pixels.to_pil(), Mode(t.mode), t.prompt, t.min_tiles, t.max_tiles)
            request.ngram_window = t.ngram_window
            prepared.append(request)
            where.append(i)
        except Exception as e:  # noqa: BLE001 - a bad image fails its page, not the batch
            out[i] = TaskError("preprocess", f"{type(e).__name__}: {e}")
    results = _generate(engine, prepared, max_new_tokens, batch_size, ngram)
    for i, res in zip(where, results, strict=True):
        res.tag = None
        out[i] = res
    tokens = sum(r.generated_tokens for r in results)
    metrics = getattr(engine, "metrics", None)
    return out, BatchStats(len(tasks), tokens, time.perf_counter() - t0, copy.deepcopy(metrics))


def _generate(engine: Any, prepared: list[Any], max_new_tokens: int, batch_size: int | None, ngram: Any) -> list[Any]:
    """The batch's results; when the batch fails, each request alone, so only one that fails on its own is a
    failed page (as the runner does in one process). Run-level errors (out of memory at one page) propagate."""
    from deepocr_cli.boundary import is_run_level, reason

    if not prepared:
        return []
    try:
        return engine.generate(prepared, max_new_tokens=max_new_tokens, batch_size=batch_size, ngram=ngram)
    except Exception as e:
        if is_run_level(e):
            raise
        if len(prepared) == 1:
            return [TaskError("generate", reason(e))]
    return [r for p in prepared for r in _generate(engine, [p], max_new_tokens, batch_size, ngram)]
