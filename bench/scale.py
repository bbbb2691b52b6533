"""Scale-out benchmark: pages/s through one in-process engine, through 1 and 2 worker processes
(`--devices`), and through 1 and 2 Ray actors (`--ray local`), on the same workload, side by side.

The figure that matters on a small CPU machine is the overhead per page of each path against the in-process
engine with the same number of engines (1): shipping the page image, preparing it in the worker, sending the
answer back. Model load time is measured apart (once per worker, not per page).

    OMP_NUM_THREADS=1 python bench/scale.py --pages 16 --repeats 5     # CPU: tiny random checkpoint, cpu,cpu

On a GPU host (every path is loaded at once, so cap each engine's batch memory; the two Ray rows hold 1 + N
GPUs at once, hence 7 actors on 8 GPUs):

    DEEPOCR_MEMORY_BUDGET=20000000000 python bench/scale.py --checkpoint ./DeepSeek-OCR --device cuda:0 \
        --devices all --ray-workers 7 --pages 256 --mode base --new-tokens 512 --batch-size 16 --repeats 3
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from deepocr_cli.engine import load_engine
from deepocr_cli.model import NGramConfig, write_random_checkpoint
from deepocr_cli.planning.modes import Mode
from deepocr_cli.scale.engine import RemoteEngine
from deepocr_cli.scale.tasks import EngineSpec


def _pages(n: int) -> list[Image.Image]:
    """Synthetic pages (each a little different) at 100 dpi A4."""
    out = []
    for i in range(n):
        img = Image.new("RGB", (827, 1169), "white")
        draw = ImageDraw.Draw(img)
        for y in range(40, 1120, 30):
            draw.text((50, y), f"Page {i}, line {y}: the quick brown fox jumps over the lazy dog.", fill="black")
        out.append(img)
    return out


def _run(engine: Any, pages: list[Image.Image], mode: Mode, new_tokens: int, batch: int) -> tuple[float, int]:
    """Seconds to prepare and generate every page, in calls of ``batch`` pages per engine; tokens generated."""
    ngram = NGramConfig()
    t0 = time.perf_counter()
    tokens = 0
    per_call = batch * getattr(getattr(engine, "backend", None), "size", 1)
    for start in range(0, len(pages), per_call):
        reqs = [engine.prepare(p, mode) for p in pages[start:start + per_call]]
        results = engine.generate(reqs, max_new_tokens=new_tokens, batch_size=batch, ngram=ngram)
        tokens += sum(r.generated_tokens for r in results)
    return time.perf_counter() - t0, tokens


def main(argv: list[str] | None = None) -> int:
    """Run each path on the same pages and print one row per path."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="checkpoint folder (default: a tiny random one)")
    parser.add_argument("--pages", type=int, default=16)
    parser.add_argument("--mode", default="tiny")
    parser.add_argument("--new-tokens", type=int, default=16, help="tokens per page (the random checkpoint never stops)")
    parser.add_argument("--batch-size", type=int, default=4, help="pages per engine per call")
    parser.add_argument("--devices", default="cpu,cpu", help="worker processes for the --devices rows")
    parser.add_argument("--ray-workers", type=int, default=2, help="actors for the Ray rows (0: skip Ray)")
    parser.add_argument("--device", default="cpu", help="device of the in-process row")
    parser.add_argument("--repeats", type=int, default=5, help="rounds (every path once per round)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from deepocr_cli.scale.local import ProcessBackend, resolve_devices

    with tempfile.TemporaryDirectory() as tmp:
        path = args.checkpoint or write_random_checkpoint(Path(tmp) / "ckpt", size="tiny", seed=0)
        spec = EngineSpec(str(path), device=args.device)
        pages, mode = _pages(args.pages), Mode(args.mode)
        # Every path is started first and then run in turn, round after round, so that a busy spell of a
        # shared machine falls on all of them; the table shows the median and the best round.
        engines: list[tuple[str, float, Any]] = []
        t0 = time.perf_counter()
        local = load_engine(str(path), device=args.device)
        engines.append(("in-process, 1 engine", time.perf_counter() - t0, local))
        devices = resolve_devices(tuple(d for d in args.devices.split(",") if d))
        started_ray = False
        try:
            for n in sorted({1, len(devices)}):
                t0 = time.perf_counter()
                engine = RemoteEngine(ProcessBackend(spec, devices[:n]))
                engines.append((f"--devices {','.join(devices[:n])}", time.perf_counter() - t0, engine))
            if args.ray_workers:
                import ray

                # Both Ray rows hold their actors at once: 1 + N CPUs (on a GPU host, 1 + N GPUs must exist).
                import torch

                from deepocr_cli.scale.ray_backend import RayBackend

                ray.init(num_cpus=None if torch.cuda.is_available() else 1 + args.ray_workers,
                         include_dashboard=False, log_to_driver=False)
                started_ray = True
                for n in sorted({1, args.ray_workers}):
                    t0 = time.perf_counter()
                    engine = RemoteEngine(RayBackend(spec, "local", n))
                    engines.append((f"--ray local --workers {n}", time.perf_counter() - t0, engine))
            for _, _, engine in engines:  # warm-up
                _run(engine, pages[:4], mode, args.new_tokens, args.batch_size)
            times: dict[str, list[float]] = {name: [] for name, _, _ in engines}
            tokens: dict[str, int] = {}
            for _ in range(args.repeats):
                for name, _, engine in engines:
                    secs, tokens[name] = _run(engine, pages, mode, args.new_tokens, args.batch_size)
                    times[name].append(secs)
        finally:
            for _, _, engine in engines:
                if isinstance(engine, RemoteEngine):
                    engine.close()
            if started_ray:
                import ray

                ray.shutdown()

    print(f"{args.pages} pages, mode {mode.value}, {args.new_tokens} tokens/page, batch {args.batch_size} per "
          f"engine, checkpoint {'tiny random' if not args.checkpoint else args.checkpoint}, "
          f"{args.repeats} rounds (median / best)")
    base = statistics.median(times[engines[0][0]]) / args.pages
    print(f"{'path':<28}{'load s':>8}{'run s':>8}{'best s':>8}{'pages/s':>9}{'tokens/s':>10}{'ms/page':>9}"
          f"{'vs in-process':>15}")
    for name, load, _ in engines:
        secs, best = statistics.median(times[name]), min(times[name])
        per_page = secs / args.pages
        print(f"{name:<28}{load:>8.1f}{secs:>8.2f}{best:>8.2f}{args.pages / secs:>9.2f}{tokens[name] / secs:>10.1f}"
              f"{per_page * 1000:>9.1f}{(per_page - base) * 1000:>+12.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
