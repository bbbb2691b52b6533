"""`RemoteEngine`: several engines (processes or Ray actors) behind the interface of one.

The runner calls ``prepare`` (here: note the image and its settings, no tensors) and ``generate`` (here: the
requests go through the `Dispatcher`'s shared queue to whichever worker is idle; each worker prepares and
generates them with its own engine). Results come back in request order, as from one engine.
"""

from __future__ import annotations

import itertools
import logging
import os
from typing import Any

from deepocr_cli import prompts
from deepocr_cli.options import ConvertOptions
from deepocr_cli.planning.modes import DEFAULT_MAX_TILES, DEFAULT_MIN_TILES, Mode
from deepocr_cli.scale.pool import Backend, Dispatcher
from deepocr_cli.scale.tasks import EngineSpec, RemotePrepared, Task

log = logging.getLogger(__name__)


class RemoteEngine:
    """One engine as far as the runner can tell; see the module docstring.

    Attributes:
        device: the workers' common device ("cpu", "cuda:0"), or their device type when they differ ("cuda").
        dtype: the workers' compute dtype.
        dispatcher: the shared queue and the workers' figures.
    """

    remote = True

    def __init__(self, backend: Backend, max_retries: int = 2, family: Any = None,
                 page_timeout_s: float | None = None) -> None:
        from deepocr_cli.planning.families import V1

        #: the model family the workers load (DeepSeek-OCR or OCR-2): token counts, tile grids, n-gram windows
        self.family = family or V1
        self.backend = backend
        self.dispatcher = Dispatcher(backend, max_retries, page_timeout_s=page_timeout_s)
        self._ids = itertools.count()
        try:
            infos = self.dispatcher.start()
        except BaseException:
            backend.close()
            raise
        # As one engine would name it: "cpu" for cpu,cpu; "cuda:1" for --devices cuda:1 (its worker sees only
        # that GPU, as cuda:0); "cuda" when the workers sit on different GPUs.
        devices = {i.device for i in infos}
        labels = {i.label.partition("#")[0] for i in infos}
        if len(labels) == 1 and labels != {"ray"}:
            self.device = labels.pop()
        else:
            self.device = devices.pop() if len(devices) == 1 else infos[0].device.split(":")[0]
        self.dtype = infos[0].dtype
        self._worker_batch = min(i.batch_size for i in infos)

    @property
    def workers(self) -> int:
        """Workers ready now."""
        return len(self.dispatcher.ready)

    def total_batch(self, batch_size: int | None) -> int:
        """Requests the runner should gather per generate() call: a batch for every worker."""
        return (batch_size or self._worker_batch) * max(1, self.backend.size)

    def suggested_batch_size(self, max_new_tokens: int = 8192) -> int:
        """As an engine's: the requests one generate() call should carry (every worker's batch)."""
        return self.total_batch(None)

    def prepare(self, image: Any, mode: Mode, prompt: str = prompts.MARKDOWN, min_tiles: int = DEFAULT_MIN_TILES,
                max_tiles: int = DEFAULT_MAX_TILES, tag: object = None) -> RemotePrepared:
        """Note the image and how to prepare it; the worker makes the tensors."""
        return RemotePrepared.of(image, mode, prompt, min_tiles, max_tiles, tag, self.family)

    def generate(self, requests: list[RemotePrepared], max_new_tokens: int = 8192, batch_size: int | None = None,
                 ngram: Any = None, **_: Any) -> list[Any]:
        """Results of every request in request order: generation results, or `TaskError`s for requests that
        could not be prepared or kept killing workers."""
        if not requests:
            return []
        if ngram is None:
            from deepocr_cli.model import NGramConfig

            ngram = NGramConfig()
        tasks = [Task.of(next(self._ids), r) for r in requests]
        answers = self.dispatcher.run(tasks, (max_new_tokens, batch_size, ngram), batch_size or self._worker_batch)
        for req, res in zip(requests, answers, strict=True):
            res.tag = req.tag
        return answers

    # ----- the continuous-batching engine's interface (issue #14): a scheduler fed one request at a time

    def engine_request(self, request: RemotePrepared, max_new_tokens: int) -> tuple[RemotePrepared, int]:
        """The scheduler's view of a request (as the engine's engine_request)."""
        limit = request.max_new_tokens if request.max_new_tokens is not None else max_new_tokens
        return request, limit

    def scheduler(self, slots: int | None = None, ngram: Any = None, **_: Any) -> RemoteScheduler:
        """A scheduler over the workers: ``slots`` requests in flight over all of them."""
        if ngram is None:
            from deepocr_cli.model import NGramConfig

            ngram = NGramConfig()
        return RemoteScheduler(self, slots or self.total_batch(None), ngram)

    def result(self, done: Any) -> Any:
        """A finished request's result, with its request's tag (as the engine's result)."""
        return done

    def worker_report(self) -> list[dict]:
        """Per-worker requests, tokens, busy time and rates."""
        return self.dispatcher.worker_report()

    def close(self) -> None:
        """Stop the workers."""
        self.backend.close()


def engine_spec(options: ConvertOptions) -> EngineSpec:
    """What each worker loads (DEEPOCR_MEMORY_BUDGET is read here and sent along)."""
    budget = os.environ.get("DEEPOCR_MEMORY_BUDGET")
    return EngineSpec(options.model, options.revision, "auto", options.dtype, int(budget) if budget else None)


def open_engine(options: ConvertOptions) -> RemoteEngine:
    """The workers ``--devices`` or ``--ray`` asks for, started and loaded."""
    spec = engine_spec(options)
    if options.ray:
        from deepocr_cli.scale.ray_backend import RayBackend

        backend: Backend = RayBackend(spec, options.ray, options.workers)
    else:
        from deepocr_cli.scale.local import ProcessBackend, resolve_devices

        backend = ProcessBackend(spec, resolve_devices(options.devices))
    log.info("starting %d worker(s)", backend.size)
    from deepocr_cli.planning.families import family_of

    return RemoteEngine(backend, options.worker_retries, family_of(options.model, options.revision),
                        options.worker_timeout)


class RemoteScheduler:
    """The scheduler interface a continuous-batching runner drives (``add``, ``step``, ``has_work``,
    ``waiting``, ``slots``, ``metrics``), over the dispatcher: ``add`` queues a request, ``step`` hands batches
    to idle workers and returns whatever finished (within half a second)."""

    def __init__(self, engine: RemoteEngine, slots: int, ngram: Any) -> None:
        self.engine = engine
        self.slots = slots
        self.ngram = ngram
        self._by_id: dict[int, RemotePrepared] = {}
        self._limit = 8192
        self.metrics = _PoolMetrics(engine)

    @property
    def waiting(self) -> _Backlog:
        """Requests that would wait even with every worker's batch full: the runner adds requests until this is
        a few, so every worker always has a full batch to take."""
        return _Backlog(max(0, self.engine.dispatcher.outstanding - self.slots))

    @property
    def has_work(self) -> bool:
        """Whether requests are queued or in flight."""
        return self.engine.dispatcher.outstanding > 0

    def add(self, item: tuple[RemotePrepared, int]) -> int:
        """Queue one request (from engine_request)."""
        request, self._limit = item
        task = Task.of(next(self.engine._ids), request)
        self._by_id[task.id] = request
        self.engine.dispatcher.submit([task])
        return task.id

    def step(self) -> list[Any]:
        """Results that finished since the last step (generation results or TaskErrors), tagged."""
        per_worker = max(1, self.slots // max(1, self.engine.backend.size))
        answers = self.engine.dispatcher.poll((self._limit, per_worker, self.ngram), per_worker, 0.5)
        out = []
        for task_id, res in answers.items():
            res.tag = self._by_id.pop(task_id).tag
            out.append(res)
        return out


class _Backlog:
    """A count that reads as a sized queue (the runner only asks its length)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


class _PoolMetrics:
    """The workers' engine counters merged, reported as the engine reports its own."""

    def __init__(self, engine: RemoteEngine) -> None:
        self.engine = engine

    def report(self) -> dict[str, float | int]:
        """The engine's report over every worker (empty when the workers' engine keeps no counters)."""
        metrics = self.engine.dispatcher.engine_metrics()
        if not metrics:
            return {}
        total = type(metrics[0])()
        for m in metrics:
            total.merge(m)
        return {**total.report(), "workers": len(metrics)}
