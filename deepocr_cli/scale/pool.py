"""The dispatcher: one shared queue of requests in the driver, fed to whichever worker is idle.

A worker holds one batch at a time, so the driver always knows what each worker has in flight. When a worker
dies (process killed, actor or node lost) its batch goes back to the front of the queue, each request to be
retried alone on another worker, and the worker is restarted. A request whose batch died more than
``max_retries`` times is answered with a `TaskError` (its page is marked failed) instead of being retried
forever. Every request is answered exactly once.

A worker can also hang (a driver or a native library stuck, a node that stops answering): with
``page_timeout_s`` set, a worker that has held a batch longer than that many seconds per request in it is
killed, and the batch takes the same way as a dead worker's. Off by default: how long a page may take depends
on the device and the page (minutes on a CPU, seconds on a GPU).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from deepocr_cli.errors import DeepOcrError, ModelError
from deepocr_cli.scale.tasks import BatchStats, Task, TaskError

log = logging.getLogger(__name__)


@dataclass
class WorkerInfo:
    """What a worker says once its engine is loaded."""

    label: str  # as the user named it: "cuda:1", "cpu#0", "ray#3"
    device: str  # the engine's device inside the worker
    dtype: str
    batch_size: int  # the engine's suggested batch size
    host: str = ""


@dataclass
class Event:
    """Something a worker did: ``ready`` (info), ``done`` (results, stats), ``dead`` (reason) or ``error``."""

    kind: str
    worker: int
    info: WorkerInfo | None = None
    results: list[Any] | None = None
    stats: BatchStats | None = None
    reason: str = ""
    error: BaseException | None = None


class Backend(Protocol):
    """Worker processes or actors, addressed by index."""

    size: int

    def start(self, worker: int) -> None:
        """Start (or restart) a worker; it answers with a ``ready`` or ``error`` event."""

    def send(self, worker: int, tasks: list[Task], params: tuple) -> None:
        """Give a ready, idle worker a batch; it answers with ``done`` or ``dead``."""

    def wait(self, timeout: float) -> list[Event]:
        """Events that arrived within ``timeout`` seconds (possibly none)."""

    def kill(self, worker: int) -> None:
        """Kill a worker abruptly (tests, and a worker that will not stop)."""

    def close(self) -> None:
        """Stop every worker."""


@dataclass
class WorkerStats:
    """Per-worker throughput for the report."""

    label: str
    device: str = ""
    host: str = ""
    requests: int = 0
    generated_tokens: int = 0
    busy_s: float = 0.0
    deaths: int = 0
    metrics: Any = None  # the engine's counters, as of its last batch

    def to_json(self) -> dict:
        """The report's per-worker entry: rates are over the time the worker spent on batches."""
        busy = self.busy_s
        return {
            "worker": self.label, "device": self.device, "host": self.host, "requests": self.requests,
            "generated_tokens": self.generated_tokens, "busy_s": round(busy, 3),
            "pages_per_s": round(self.requests / busy, 4) if busy > 0 else 0.0,
            "tokens_per_s": round(self.generated_tokens / busy, 2) if busy > 0 else 0.0,
            "deaths": self.deaths,
        }


@dataclass
class _Pending:
    task: Task
    deaths: int = 0
    solo: bool = False  # retried alone after its batch died, so a page that kills workers only kills itself


@dataclass
class Dispatcher:
    """Runs lists of tasks over a backend's workers; see the module docstring."""

    backend: Backend
    max_retries: int = 2
    start_timeout_s: float = 1800.0  # loading a model on a cold node (downloads) can take long
    on_dispatch: Callable[[int, list[Task]], None] | None = None  # observer (tests kill a worker here)
    page_timeout_s: float | None = None  # a batch unanswered this long per request in it: the worker is hung
    infos: dict[int, WorkerInfo] = field(default_factory=dict)
    stats: dict[int, WorkerStats] = field(default_factory=dict)
    restarts: int = 0

    def __post_init__(self) -> None:
        self._busy: dict[int, list[_Pending]] = {}
        self._sent_at: dict[int, float] = {}
        self._hung: dict[int, str] = {}  # workers killed for not answering, and why
        self._starting: set[int] = set()
        self._queue: deque[_Pending] = deque()
        self._outstanding = 0
        self._max_restarts = 4 + 4 * self.backend.size

    def start(self) -> list[WorkerInfo]:
        """Start every worker and wait until all have loaded their engine (an engine error is raised)."""
        for w in range(self.backend.size):
            self.backend.start(w)
            self._starting.add(w)
        deadline = time.monotonic() + self.start_timeout_s
        while self._starting:
            if time.monotonic() > deadline:
                raise ModelError(f"{len(self._starting)} worker(s) did not load the model within "
                                 f"{self.start_timeout_s:.0f} s")
            for ev in self.backend.wait(1.0):
                if ev.kind == "dead":  # a worker that cannot even start will not start on a retry either
                    raise ModelError(f"worker {ev.worker} died while loading the model ({ev.reason})")
                self._on_event(ev, deque(), {})
        return [self.infos[w] for w in sorted(self.infos)]

    @property
    def ready(self) -> list[int]:
        """Workers that have loaded their engine and are alive."""
        return [w for w in sorted(self.infos) if w not in self._starting]

    def run(self, tasks: list[Task], params: tuple, batch_size: int) -> list[Any]:
        """Answer every task (a generation result or a TaskError), in task order."""
        self.submit(tasks)
        answers: dict[int, Any] = {}
        while len(answers) < len(tasks):
            answers.update(self.poll(params, batch_size, 0.5))
        return [answers[t.id] for t in tasks]

    def submit(self, tasks: list[Task]) -> None:
        """Queue tasks; `poll` hands them to workers and collects their answers."""
        self._queue.extend(_Pending(t) for t in tasks)
        self._outstanding += len(tasks)

    @property
    def outstanding(self) -> int:
        """Tasks submitted and not answered yet (queued or in flight)."""
        return self._outstanding

    def poll(self, params: tuple, batch_size: int, timeout: float) -> dict[int, Any]:
        """Give idle workers batches of at most ``batch_size``, then wait up to ``timeout`` s for answers."""
        self._dispatch(self._queue, params, batch_size)
        if self._outstanding and not self._busy and not self._starting:
            raise ModelError("every worker is gone and none could be restarted")
        answers: dict[int, Any] = {}
        for ev in self.backend.wait(timeout):
            self._on_event(ev, self._queue, answers)
        self._outstanding -= len(answers)
        self._kill_hung()
        return answers

    def _kill_hung(self) -> None:
        """Kill each worker whose batch is overdue; its death arrives through the backend like any other."""
        if self.page_timeout_s is None:
            return
        now = time.monotonic()
        for w, batch in self._busy.items():
            limit = self.page_timeout_s * len(batch)
            if w not in self._hung and now - self._sent_at.get(w, now) > limit:
                self._hung[w] = f"no answer within {limit:.0f} s, killed as hung"
                log.warning("worker %s has not answered a batch of %d page(s) in %.0f s: killing it",
                            self.stats[w].label if w in self.stats else w, len(batch), limit)
                self.backend.kill(w)

    def _dispatch(self, queue: deque[_Pending], params: tuple, batch_size: int) -> None:
        idle = [w for w in self.ready if w not in self._busy]
        for i, w in enumerate(idle):
            if not queue:
                return
            if queue[0].solo:
                batch = [queue.popleft()]
            else:
                # Share what is queued among the idle workers rather than giving the first one everything.
                n = min(batch_size, math.ceil(len(queue) / (len(idle) - i)))
                batch = []
                while queue and len(batch) < n and not queue[0].solo:
                    batch.append(queue.popleft())
            self._busy[w] = batch
            self._sent_at[w] = time.monotonic()
            tasks = [p.task for p in batch]
            self.backend.send(w, tasks, params)
            if self.on_dispatch is not None:
                self.on_dispatch(w, tasks)

    def _on_event(self, ev: Event, queue: deque[_Pending], answers: dict[int, Any]) -> None:
        w = ev.worker
        if ev.kind == "ready":
            assert ev.info is not None
            self._starting.discard(w)
            self.infos[w] = ev.info
            st = self.stats.setdefault(w, WorkerStats(ev.info.label))
            st.device, st.host = ev.info.device, ev.info.host
        elif ev.kind == "done":
            batch = self._busy.pop(w)
            assert ev.results is not None and ev.stats is not None and len(ev.results) == len(batch)
            for p, res in zip(batch, ev.results, strict=True):
                answers[p.task.id] = res
            st = self.stats[w]
            st.requests += ev.stats.requests
            st.generated_tokens += ev.stats.generated_tokens
            st.busy_s += ev.stats.busy_s
            st.metrics = ev.stats.metrics if ev.stats.metrics is not None else st.metrics
        elif ev.kind == "error":
            # The engine raised (out of memory at batch size 1, a bad checkpoint): as in one process, the run stops.
            assert ev.error is not None
            raise ev.error
        elif ev.kind == "dead":
            self._on_death(w, ev.reason, queue, answers)

    def _on_death(self, w: int, reason: str, queue: deque[_Pending], answers: dict[int, Any]) -> None:
        reason = self._hung.pop(w, reason)
        batch = self._busy.pop(w, [])
        self.infos.pop(w, None)
        self._starting.discard(w)
        if w in self.stats:
            self.stats[w].deaths += 1
        log.warning("worker %s died (%s); %d request(s) in flight go back to the queue",
                    self.stats[w].label if w in self.stats else w, reason, len(batch))
        for p in reversed(batch):
            p.deaths += 1
            if p.deaths > self.max_retries:
                answers[p.task.id] = TaskError(
                    "worker", f"lost {p.deaths} worker(s) while generating this page ({reason}); not retried again")
            else:
                p.solo = True
                queue.appendleft(p)
        if self.restarts >= self._max_restarts:
            log.warning("not restarting worker %d: %d restarts already", w, self.restarts)
            return
        self.restarts += 1
        self.backend.start(w)
        self._starting.add(w)

    def engine_metrics(self) -> list[Any]:
        """Each worker's engine counters (those that keep them)."""
        return [st.metrics for st in self.stats.values() if st.metrics is not None]

    def worker_report(self) -> list[dict]:
        """Per-worker figures for the run report, in worker order."""
        return [self.stats[w].to_json() for w in sorted(self.stats)]


def raise_worker_error(kind: str, message: str) -> BaseException:
    """Rebuild an engine error a worker could not send as itself."""
    return DeepOcrError(f"{kind}: {message}")
