"""Local worker processes, one engine each (``--devices cuda:0,cuda:1``, ``--devices cpu,cpu``).

Each worker is a spawned process that sees only its own GPU (CUDA_VISIBLE_DEVICES), talks to the driver over
its own pipe, ignores Ctrl-C (the driver decides when to stop) and exits when the driver's end of the pipe
closes, so a killed driver leaves no workers behind.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import socket
from multiprocessing.connection import Connection, wait
from typing import Any

from deepocr_cli.errors import UsageError
from deepocr_cli.scale.pool import Event, WorkerInfo
from deepocr_cli.scale.tasks import EngineSpec, Task

log = logging.getLogger(__name__)


def resolve_devices(devices: tuple[str, ...]) -> list[str]:
    """The device list of ``--devices``: ``all`` is every CUDA device; names are checked.

    Raises:
        UsageError: ``all`` on a machine without CUDA, or a name that is not cpu/cuda/cuda:N/mps.
    """
    if devices == ("all",):
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise UsageError("--devices all: no CUDA device is visible (use --devices cpu,cpu on a CPU machine)")
        return [f"cuda:{i}" for i in range(n)]
    out = []
    for d in devices:
        base, _, index = d.partition(":")
        if base not in ("cpu", "cuda", "mps") or (index and not (base == "cuda" and index.isdigit())):
            raise UsageError(f"--devices takes a comma list of cpu, cuda:N, mps, or `all`; got {d!r}")
        out.append("cuda:0" if d == "cuda" else d)
    return out


def _child_env(device: str) -> dict[str, str]:
    """Environment of a worker: only its own GPU visible, threads shared fairly on CPU."""
    env: dict[str, str] = {}
    if device.startswith("cuda:"):
        index = int(device.split(":")[1])
        visible = [v for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
        env["CUDA_VISIBLE_DEVICES"] = visible[index] if index < len(visible) else str(index)
    return env


def _worker_main(conn: Connection, spec: EngineSpec, label: str, env: dict[str, str], threads: int | None) -> None:
    """A worker process: load the engine, then answer batches until the pipe closes or says stop."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.update(env)
    from deepocr_cli.scale.tasks import run_tasks

    try:
        import torch

        if threads:
            torch.set_num_threads(threads)
        engine = spec.load()
        batch = engine.suggested_batch_size()
        conn.send(("ready", WorkerInfo(label, str(engine.device), str(engine.dtype).replace("torch.", ""), batch,
                                       socket.gethostname())))
    except BaseException as e:  # noqa: BLE001 - sent to the driver, which raises it
        conn.send(("error", _picklable(e)))
        return
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return  # the driver is gone
        if msg is None:
            return
        tasks, (max_new_tokens, batch_size, ngram) = msg
        try:
            results, stats = run_tasks(engine, tasks, max_new_tokens, batch_size, ngram)
        except BaseException as e:  # noqa: BLE001 - the engine's error stops the run, as in one process
            conn.send(("error", _picklable(e)))
            continue
        conn.send(("done", results, stats))


def _picklable(e: BaseException) -> BaseException:
    import pickle

    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{type(e).__name__}: {e}")


class ProcessBackend:
    """One spawned process per device; see the module docstring."""

    def __init__(self, spec: EngineSpec, devices: list[str]) -> None:
        self.spec = spec
        self.devices = devices
        self.size = len(devices)
        self._ctx = mp.get_context("spawn")  # fork would copy the driver's threads and CUDA state
        self._procs: dict[int, Any] = {}
        self._conns: dict[int, Connection] = {}
        # CPU workers share the cores (OMP_NUM_THREADS, when set, caps each one).
        n_cpu = sum(1 for d in devices if d == "cpu")
        cap = int(os.environ["OMP_NUM_THREADS"]) if os.environ.get("OMP_NUM_THREADS", "").isdigit() else 1 << 16
        self._threads = max(1, min(cap, (os.cpu_count() or 1) // n_cpu)) if n_cpu else None

    def label(self, worker: int) -> str:
        """How the report names a worker: its device, numbered when several share one (cpu#0, cpu#1)."""
        d = self.devices[worker]
        return f"{d}#{worker}" if self.devices.count(d) > 1 else d

    def start(self, worker: int) -> None:
        """Spawn (or respawn) a worker process."""
        self._drop(worker)
        device = self.devices[worker]
        spec = self.spec.with_device("cuda" if device.startswith("cuda") else device)
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(
            target=_worker_main, name=f"deepocr-worker-{worker}", daemon=True,
            args=(child, spec, self.label(worker), _child_env(device), self._threads if device == "cpu" else None),
        )
        proc.start()
        child.close()
        self._procs[worker], self._conns[worker] = proc, parent

    def pid(self, worker: int) -> int:
        """Process id of a worker (tests kill it)."""
        return self._procs[worker].pid

    def send(self, worker: int, tasks: list[Task], params: tuple) -> None:
        """Hand a worker a batch (a broken pipe shows up as its death in wait())."""
        try:
            self._conns[worker].send((tasks, params))
        except (BrokenPipeError, OSError) as e:
            log.debug("send to worker %d failed: %s", worker, e)

    def wait(self, timeout: float) -> list[Event]:
        """Messages from workers, and the deaths of workers (their pipe closed)."""
        by_conn = {c: w for w, c in self._conns.items()}
        events = []
        for conn in wait(list(by_conn), timeout):
            w = by_conn[conn]
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                proc = self._procs[w]
                proc.join(timeout=5)
                events.append(Event("dead", w, reason=f"process exited with code {proc.exitcode}"))
                self._drop(w)
                continue
            if msg[0] == "ready":
                events.append(Event("ready", w, info=msg[1]))
            elif msg[0] == "done":
                events.append(Event("done", w, results=msg[1], stats=msg[2]))
            else:
                events.append(Event("error", w, error=msg[1]))
        return events

    def kill(self, worker: int) -> None:
        """SIGKILL a worker."""
        proc = self._procs.get(worker)
        if proc is not None and proc.is_alive():
            proc.kill()

    def _drop(self, worker: int) -> None:
        conn = self._conns.pop(worker, None)
        if conn is not None:
            conn.close()
        proc = self._procs.pop(worker, None)
        if proc is not None and proc.is_alive():
            proc.kill()
            proc.join(timeout=5)

    def close(self) -> None:
        """Ask every worker to stop, then make sure they did."""
        for conn in self._conns.values():
            with contextlib.suppress(OSError):
                conn.send(None)
        for proc in self._procs.values():
            proc.join(timeout=3)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=3)
        for conn in self._conns.values():
            conn.close()
        self._procs.clear()
        self._conns.clear()
