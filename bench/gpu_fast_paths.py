"""Parts (e)-(g) of bench/gpu_check.py: the engine's CUDA fast paths, each against the plain engine in one run.

  (e) decode: eager versus CUDA graphs (``cuda_graphs=True``) at a few slot counts, Base pages, a fixed
      number of generated tokens; generated tok/s of the decode steps, graphs captured, and whether the
      tokens agree. Each configuration runs twice on one scheduler and the second run is timed, so graph
      capture (and cuBLAS warm-up) is not in the figure. With --smoke (CPU) the graph-shaped step runs
      eagerly (``cuda_graphs="eager"``): no speed-up to expect there, only the same tokens.
  (f) prefill: padded SDPA versus packed FlexAttention versus packed flash_attn varlen (when importable),
      Gundam pages with one generated token: prefill tokens/s (second run timed: flex compiles on the
      first). With --smoke the varlen row runs our packing with the SDPA stand-in (``sdpa_varlen``).
  (g) vision encoding on a side stream while decoding (``overlap=True``) versus in line, on a stream of
      Base pages arriving into a full batch: generated tok/s and pages/s.

With --smoke the sizes are tiny (the script is only shown to run); --smoke-scale K multiplies them for a
CPU measurement of the same comparisons (BENCHMARKS.md §8).

Imports only torch and the project (no typer, rich, pymupdf).
"""

from __future__ import annotations

import functools
import importlib.util
import time
from typing import Any

import torch

from deepocr_cli.engine.attention import sdpa_varlen
from deepocr_cli.planning.modes import Mode


def _second_run(g: Any, model, device, reqs_fn, slots: int, **options) -> dict:
    """Run the workload twice on one scheduler; figures of the second run (first: warm-up, captures, compiles)."""
    sched = g.scheduler(model, slots, **options)
    first = sched.run(reqs_fn())
    m0 = dict(sched.metrics.report())
    g.sync(device)
    t0 = time.perf_counter()
    done = sched.run(reqs_fn())
    g.sync(device)
    wall = time.perf_counter() - t0
    m1 = sched.metrics.report()
    delta = {k: m1[k] - m0[k] for k in ("generated_tokens", "decode_s", "prefill_s", "prefill_tokens", "encode_s")}
    tokens = sum(len(f.token_ids) for f in done)
    graphs = getattr(sched, "graphs", None)
    return {"wall_s": wall, "tok_s": tokens / wall, "pages_s": len(done) / wall,
            "decode_tok_s": delta["generated_tokens"] / max(delta["decode_s"], 1e-9),
            "prefill_tok_s": delta["prefill_tokens"] / max(delta["prefill_s"], 1e-9),
            "ids": [f.token_ids for f in done], "first_ids": [f.token_ids for f in first],
            "captured": getattr(graphs, "captured", 0), "replays": getattr(graphs, "replays", 0),
            "graphs_failed": getattr(graphs, "failed", False) or (options.get("cuda_graphs") is True and graphs is None),
            **{f"delta_{k}": v for k, v in delta.items()}}


def part_e(g: Any, rep: Any, device: torch.device, smoke: bool, model, deadline: float) -> None:
    """Decode tok/s, eager versus CUDA graphs (graph-shaped eager step on CPU)."""
    k = g.SMOKE_SCALE
    slot_list, tokens = (([3] if k == 1 else [2, 5, 8]), 5 * k) if smoke else ([32, 128, 256], 200)
    graphs = "eager" if device.type != "cuda" else True
    for slots in slot_list:
        if time.monotonic() > deadline:
            rep.add("(e)", f"slots={slots}", "skipped: time budget spent")
            continue
        reqs = functools.partial(g.make_requests, model, [Mode.BASE], [tokens] * slots, smoke)
        eager = _second_run(g, model, device, reqs, slots, ignore_eos=True)
        graph = _second_run(g, model, device, reqs, slots, ignore_eos=True, cuda_graphs=graphs)
        label = "graph-shaped (eager, CPU)" if graphs == "eager" else "CUDA graphs"
        note = " CAPTURE FAILED, eager" if graph["graphs_failed"] else ""
        rep.add("(e)", f"decode base slots={slots} {tokens} tok/page: eager vs {label}",
                f"{eager['decode_tok_s']:,.0f} vs {graph['decode_tok_s']:,.0f} tok/s in decode steps "
                f"(x{graph['decode_tok_s'] / max(eager['decode_tok_s'], 1e-9):.2f}); graphs captured "
                f"{graph['captured']}, replays {graph['replays']}{note}; {g.agreement(eager['ids'], graph['ids'])}",
                {k: v for k, v in graph.items() if k not in ("ids", "first_ids")})


def part_f(g: Any, rep: Any, device: torch.device, smoke: bool, model, deadline: float) -> None:
    """Prefill tokens/s: padded SDPA, packed flex, packed varlen."""
    pages = 3 * g.SMOKE_SCALE if smoke else 48
    kernels: list[tuple[str, dict]] = [("sdpa (padded)", {"prefill_attention": "sdpa"}),
                                       ("flex (packed)", {"prefill_attention": "flex"})]
    if device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        kernels.append(("flash varlen (packed)", {"prefill_attention": "varlen"}))
    elif device.type != "cuda":
        kernels.append(("varlen packing, SDPA stand-in", {"prefill_attention": "varlen", "varlen": sdpa_varlen}))
    else:
        rep.add("(f)", "flash varlen prefill", "skipped: flash_attn not importable")
    lengths = [1] * pages
    reqs = lambda: g.make_requests(model, [Mode.GUNDAM, Mode.BASE, Mode.GUNDAM, Mode.SMALL], lengths, smoke)  # noqa: E731
    results = {}
    for name, opts in kernels:
        if time.monotonic() > deadline:
            rep.add("(f)", name, "skipped: time budget spent")
            continue
        try:
            r = results[name] = _second_run(g, model, device, reqs, pages if smoke else 16, ignore_eos=True, **opts)
        except Exception as exc:  # noqa: BLE001 - one kernel failing must not hide the others
            rep.fail("(f)", exc)
            continue
        rep.add("(f)", f"prefill {pages} pages (gundam/base/small) {name}",
                f"{r['prefill_tok_s']:,.0f} prefill tok/s ({r['delta_prefill_tokens']:,} tokens in "
                f"{r['delta_prefill_s']:.2f} s); first tokens vs {next(iter(results))}: "
                f"{sum(a == b for a, b in zip(r['ids'], next(iter(results.values()))['ids'], strict=True))}/{pages} equal",
                {k: v for k, v in r.items() if k not in ("ids", "first_ids")})


def part_g(g: Any, rep: Any, device: torch.device, smoke: bool, model, deadline: float) -> None:
    """Side-stream vision encoding on/off under continuous arrivals."""
    k = g.SMOKE_SCALE
    slots, pages = (3 + k - 1, 5 * k) if smoke else (64, 192)
    lengths = g.page_lengths(pages, seed=1, lo=3 if smoke else 20, hi=16 * k if smoke else 600,
                             median=6 * k if smoke else 150)
    reqs = lambda: g.make_requests(model, [Mode.BASE, Mode.GUNDAM, Mode.SMALL], lengths, smoke)  # noqa: E731
    out = {}
    for name, overlap in (("in line", False), ("side stream", True)):
        if time.monotonic() > deadline:
            rep.add("(g)", name, "skipped: time budget spent")
            return
        r = out[name] = _second_run(g, model, device, reqs, slots, ignore_eos=True, overlap=overlap)
        rep.add("(g)", f"encode {name} slots={slots} pages={pages}",
                f"{r['tok_s']:,.0f} tok/s, {r['pages_s']:.2f} pages/s, {r['wall_s']:.1f} s",
                {k: v for k, v in r.items() if k not in ("ids", "first_ids")})
    a, b = out["in line"], out["side stream"]
    rep.add("(g)", "side stream / in line", f"pages/s x{b['pages_s'] / a['pages_s']:.2f}; outputs identical: "
            f"{a['ids'] == b['ids']}")
