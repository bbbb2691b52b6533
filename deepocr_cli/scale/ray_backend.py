"""Ray actors, one engine each (``--ray local|auto|ray://host:port``, ``--workers N``).

Ray is imported only here, only with ``--ray``. Each actor holds one engine and reserves one GPU (one CPU on
a cluster without GPUs). The driver ships page images through Ray's object store (see `tasks`): workers need
deepocr-cli installed and the model reachable, not the inputs.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Iterator
from typing import Any

from deepocr_cli.errors import UsageError
from deepocr_cli.scale.pool import Event, WorkerInfo
from deepocr_cli.scale.tasks import EngineSpec, Task

log = logging.getLogger(__name__)


def import_ray() -> Any:
    """The ray module, or a usage error (exit 2) saying how to install it."""
    try:
        import ray
    except ImportError as e:
        raise UsageError("--ray needs Ray, which is not installed: pip install 'deepocr-cli[ray]'") from e
    return ray


def connect(address: str) -> tuple[Any, bool]:
    """Join (or, for ``local``, start) a Ray instance; returns (ray, whether this run started it)."""
    ray = import_ray()
    if not (address in ("local", "auto") or address.startswith("ray://")):
        raise UsageError(f"--ray takes local, auto or ray://host:port, got {address!r}")
    if ray.is_initialized():
        return ray, False
    with _keep_sigterm_handler():
        if address == "local":
            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
            return ray, True
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        except ConnectionError as e:
            raise UsageError(f"--ray {address}: no Ray cluster reachable ({e})") from e
    return ray, False


@contextlib.contextmanager
def _keep_sigterm_handler() -> Iterator[None]:
    """ray.init installs a SIGTERM handler that aborts the process; keep ours (finish, release, exit 130)."""
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except ValueError:
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            with contextlib.suppress(ValueError):  # not the main thread
                signal.signal(signal.SIGTERM, previous)


class _EngineActor:
    """The actor's body: one engine, batches in, results out."""

    def __init__(self, spec: EngineSpec, label: str) -> None:
        import socket

        self.engine = spec.load()
        self.info = WorkerInfo(label, str(self.engine.device), str(self.engine.dtype).replace("torch.", ""),
                               self.engine.suggested_batch_size(), socket.gethostname())

    def ready(self) -> WorkerInfo:
        return self.info

    def run(self, tasks: list[Task], params: tuple) -> tuple:
        from deepocr_cli.scale.tasks import run_tasks

        max_new_tokens, batch_size, ngram = params
        return run_tasks(self.engine, tasks, max_new_tokens, batch_size, ngram)


class RayBackend:
    """N actors; a lost actor (killed, node gone) is a dead worker, restarted as a new actor."""

    def __init__(self, spec: EngineSpec, address: str, workers: int | None) -> None:
        self.ray, self._owns = connect(address)
        ray = self.ray
        gpus = int(ray.cluster_resources().get("GPU", 0))
        self.use_gpu = gpus > 0
        if workers is None:
            # One replica per GPU; without GPUs, one CPU replica per node.
            workers = gpus or max(1, sum(1 for n in ray.nodes() if n.get("Alive")))
        self.size = workers
        have = gpus if self.use_gpu else int(ray.cluster_resources().get("CPU", 0))
        if workers > have:
            log.warning("%d Ray workers asked for, the cluster has %d %s now: the rest wait for the autoscaler "
                        "(or forever, on a fixed cluster)", workers, have, "GPUs" if self.use_gpu else "CPUs")
        self.spec = spec.with_device("cuda" if self.use_gpu else "cpu")
        self._cls = ray.remote(num_gpus=1, num_cpus=1)(_EngineActor) if self.use_gpu else \
            ray.remote(num_cpus=1)(_EngineActor)
        self._actors: dict[int, Any] = {}
        self._refs: dict[Any, tuple[int, str]] = {}  # object ref -> (worker, "ready" | "run")

    def start(self, worker: int) -> None:
        """Create (or recreate) an actor; its ready() call answers when the engine is loaded."""
        self.kill(worker)
        actor = self._cls.options(name=None).remote(self.spec, f"ray#{worker}")
        self._actors[worker] = actor
        self._refs[actor.ready.remote()] = (worker, "ready")

    def send(self, worker: int, tasks: list[Task], params: tuple) -> None:
        """Call the actor's run() with a batch."""
        self._refs[self._actors[worker].run.remote(tasks, params)] = (worker, "run")

    def wait(self, timeout: float) -> list[Event]:
        """Finished calls; a call that failed because its actor died is that worker's death."""
        ray = self.ray
        if not self._refs:
            return []
        done, _ = ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        if done:
            more, _ = ray.wait([r for r in self._refs if r not in done], num_returns=len(self._refs) - 1,
                               timeout=0) if len(self._refs) > 1 else ([], [])
            done = done + more
        events = []
        for ref in done:
            worker, kind = self._refs.pop(ref)
            try:
                value = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                    ray.exceptions.ObjectLostError) as e:
                events.append(Event("dead", worker, reason=type(e).__name__))
                continue
            except ray.exceptions.RayTaskError as e:  # the engine raised: the run stops with that error
                cause = e.cause if isinstance(getattr(e, "cause", None), BaseException) else e
                events.append(Event("error", worker, error=cause))
                continue
            if kind == "ready":
                events.append(Event("ready", worker, info=value))
            else:
                events.append(Event("done", worker, results=value[0], stats=value[1]))
        return events

    def kill(self, worker: int) -> None:
        """Kill an actor at once (no restart by Ray: the dispatcher restarts it)."""
        actor = self._actors.pop(worker, None)
        if actor is not None:
            self.ray.kill(actor, no_restart=True)

    def actor(self, worker: int) -> Any:
        """The actor handle of a worker (tests kill it)."""
        return self._actors[worker]

    def close(self) -> None:
        """Kill the actors; shut down the Ray instance this run started."""
        for w in list(self._actors):
            self.kill(w)
        self._refs.clear()
        if self._owns:
            self.ray.shutdown()
