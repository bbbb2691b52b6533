"""Static versus continuous batching on a mixed-length workload: slot occupancy, pages/s, identical outputs.

Page lengths are drawn from a long-tailed (log-normal) distribution clipped to [20, 4000] tokens. The
tiny random checkpoint never emits EOS, so each page stops exactly at its drawn length (its own
``max_new_tokens``), which the scheduler handles like an EOS stop. Both schedules run the same engine
(`static` only admits pages into an empty batch: the old behaviour), one after the other, and the
greedy outputs are compared token for token.

    python bench/engine_schedule.py --pages 48 --slots 8
    python bench/engine_schedule.py --pages 24 --slots 8 --tight-kv-tokens 3000   # with preemptions
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw

log = logging.getLogger(__name__)


def page_lengths(n: int, seed: int = 0, lo: int = 20, hi: int = 4000, median: float = 300.0,
                 sigma: float = 1.1) -> list[int]:
    """``n`` output lengths from a log-normal with the given median, clipped to [lo, hi]."""
    rng = random.Random(seed)
    return [max(lo, min(hi, round(rng.lognormvariate(math.log(median), sigma)))) for _ in range(n)]


def synthetic_page(i: int, width: int = 640, height: int = 900) -> Image.Image:
    """A white page with a few numbered text lines (different for each i)."""
    img = Image.new("RGB", (width + 7 * (i % 5), height - 11 * (i % 7)), "white")
    draw = ImageDraw.Draw(img)
    for y in range(30, img.height - 30, 40):
        draw.text((30, y), f"page {i} line {y}: the quick brown fox", fill="black")
    return img


def run_schedule(engine, requests, slots: int, static: bool, **options) -> tuple[list[list[int]], dict]:
    """Generate all requests on one scheduler; returns (token ids per request, metrics report)."""
    sched = engine.scheduler(slots, static=static, **options)
    out = sched.run([engine.engine_request(r, 8192) for r in requests])
    return [f.token_ids for f in out], sched.metrics.report()


def build_requests(engine, lengths: list[int], modes) -> list:
    """One prepared request per length, cycling through ``modes``."""
    reqs = []
    for i, n in enumerate(lengths):
        r = engine.prepare(synthetic_page(i), modes[i % len(modes)], tag=i)
        r.max_new_tokens = n
        reqs.append(r)
    return reqs


def compare(engine, requests, slots: int, tight_kv_bytes: int | None = None) -> list[tuple[str, dict]]:
    """Run static, continuous (and continuous under a small KV budget); [(name, report + identical flag)]."""
    runs = [("static", True, {}), ("continuous", False, {})]
    if tight_kv_bytes:
        runs.append(("cont. tight", False, {"kv_budget": tight_kv_bytes}))
    rows = []
    outputs = {}
    for name, static, options in runs:
        t0 = time.perf_counter()
        ids, report = run_schedule(engine, requests, slots, static, **options)
        report["wall_s"] = round(time.perf_counter() - t0, 3)
        outputs[name] = ids
        rows.append((name, report))
    for name, r in rows:
        r["identical_outputs"] = outputs[name] == outputs["static"]
    return rows


def format_table(rows: list[tuple[str, dict]]) -> str:
    """A plain-text table of the two schedules and their ratio."""
    cols = ["pages", "generated_tokens", "wall_s", "generated_tok_per_s", "pages_per_s", "decode_steps",
            "avg_running_sequences", "slot_occupancy", "steady_slot_occupancy", "preemptions", "kv_peak_bytes",
            "identical_outputs"]
    lines = ["schedule     " + " ".join(f"{c:>12.12}" for c in cols)]
    for name, r in rows:
        lines.append(f"{name:<12} " + " ".join(f"{str(r[c]):>12.12}" for c in cols))
    (_, s), (_, c) = rows[:2]
    if s["pages_per_s"]:
        lines.append(f"continuous / static pages/s: {c['pages_per_s'] / s['pages_per_s']:.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Write a tiny random checkpoint, run both schedules on the same pages, print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=48)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--median", type=float, default=300.0, help="median page length (tokens)")
    parser.add_argument("--max-length", type=int, default=4000)
    parser.add_argument("--modes", default="tiny,small", help="comma-separated modes, cycled over the pages")
    parser.add_argument("--checkpoint", type=Path, help="use this checkpoint instead of a tiny random one")
    parser.add_argument("--tight-kv-tokens", type=int, default=0,
                        help="also run continuous with a KV budget of this many positions (forces preemptions)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from deepocr_cli.engine import load_engine
    from deepocr_cli.model import write_random_checkpoint
    from deepocr_cli.planning.modes import Mode

    with tempfile.TemporaryDirectory() as tmp:
        path = args.checkpoint or write_random_checkpoint(Path(tmp) / "tiny", size="tiny", seed=args.seed)
        engine = load_engine(str(path), device="cpu")
        lengths = page_lengths(args.pages, args.seed, hi=args.max_length, median=args.median)
        modes = [Mode(m) for m in args.modes.split(",")]
        requests = build_requests(engine, lengths, modes)
        print(f"{args.pages} pages, lengths {min(lengths)}..{max(lengths)} (median {sorted(lengths)[len(lengths) // 2]},"
              f" total {sum(lengths)}), modes {args.modes}, {args.slots} slots")
        tight = args.tight_kv_tokens * engine.config.decoder.kv_bytes_per_token(4) if args.tight_kv_tokens else None
        rows = compare(engine, requests, args.slots, tight)
    print(format_table(rows))
    return 0 if all(r["identical_outputs"] for _, r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
