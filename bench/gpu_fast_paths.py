"""Parts (e)-(g) of bench/gpu_check.py: the engine's CUDA fast paths, each against the plain engine in one run.

  (e) decode: eager versus CUDA graphs (``cuda_graphs=True``) at a few slot counts, Base pages, a fixed
      number of generated tokens; generated tok/s of the decode steps, graphs captured, and whether the
      tokens agree. Each configuration keeps one scheduler: a warm-up run, then --repeats timed runs taking
      turns with the other configuration (medians), so graph capture and cuBLAS warm-up are not in the figure. With --smoke (CPU) the graph-shaped step runs
      eagerly (``cuda_graphs="eager"``): no speed-up to expect there, only the same tokens.
  (f) prefill: padded SDPA versus packed FlexAttention versus packed flash_attn varlen (when importable),
      Gundam pages with one generated token: prefill tokens/s (after a warm-up run: flex compiles on it). With --smoke the varlen row runs our packing with the SDPA stand-in (``sdpa_varlen``).
  (g) vision encoding on a side stream while decoding (``overlap=True``) versus in line, on a stream of
      Base pages arriving into a full batch: generated tok/s and pages/s.

With --smoke the sizes are tiny (the script is only shown to run); --smoke-scale K multiplies them for a
CPU measurement of the same comparisons (BENCHMARKS.md §8).

Imports only torch and the project (no typer, rich, pymupdf).
"""

from __future__ import annotations

import functools
import importlib.util
import statistics
import time
from typing import Any

import torch

from deepocr_cli.engine.attention import sdpa_varlen
from deepocr_cli.planning.modes import Mode


def _compare(g: Any, model, device, reqs_fn, slots: int, configs: dict[str, dict], repeats: int) -> dict[str, dict]:
    """Each configuration on its own scheduler: one warm-up run (captures, compiles), then ``repeats`` timed runs,
    the configurations taking turns so that a busy machine slows them alike; median figures per configuration."""
    scheds = {name: g.scheduler(model, slots, **opts) for name, opts in configs.items()}
    for sched in scheds.values():
        sched.run(reqs_fn())
    runs: dict[str, list[dict]] = {name: [] for name in configs}
    for _ in range(repeats):
        for name, sched in scheds.items():
            m0 = dict(sched.metrics.report())
            g.sync(device)
            t0 = time.perf_counter()
            done = sched.run(reqs_fn())
            g.sync(device)
            wall = time.perf_counter() - t0
            m1 = sched.metrics.report()
            d = {k: m1[k] - m0[k] for k in ("generated_tokens", "decode_s", "prefill_s", "prefill_tokens")}
            runs[name].append({"wall_s": wall, "tok_s": sum(len(f.token_ids) for f in done) / wall,
                               "pages_s": len(done) / wall,
                               "decode_tok_s": d["generated_tokens"] / max(d["decode_s"], 1e-9),
                               "prefill_tok_s": d["prefill_tokens"] / max(d["prefill_s"], 1e-9),
                               "prefill_tokens": d["prefill_tokens"], "prefill_s": d["prefill_s"],
                               "ids": [f.token_ids for f in done]})
    out = {}
    for name, rs in runs.items():
        med = {k: statistics.median(r[k] for r in rs) for k in rs[0] if k != "ids"}
        graphs = getattr(scheds[name], "graphs", None)
        wanted = configs[name].get("cuda_graphs") is True
        out[name] = {**med, "ids": rs[-1]["ids"], "same_every_run": all(r["ids"] == rs[0]["ids"] for r in rs),
                     "repeats": repeats, "captured": getattr(graphs, "captured", 0),
                     "replays": getattr(graphs, "replays", 0),
                     "graphs_failed": wanted and (graphs is None or graphs.failed)}
    return out


def _record(r: dict) -> dict:
    return {k: v for k, v in r.items() if k != "ids"}


def part_e(g: Any, rep: Any, device: torch.device, smoke: bool, model, deadline: float) -> None:
    """Decode tok/s, eager versus CUDA graphs (graph-shaped eager step on CPU)."""
    k = g.SMOKE_SCALE
    slot_list, tokens = (([3] if k == 1 else [2, 5, 8]), 5 * k) if smoke else ([32, 128, 256], 200)
    graphs = "eager" if device.type != "cuda" else True
    label = "graph-shaped (eager, CPU)" if graphs == "eager" else "CUDA graphs"
    for slots in slot_list:
        if time.monotonic() > deadline:
            rep.add("(e)", f"slots={slots}", "skipped: time budget spent")
            continue
        reqs = functools.partial(g.make_requests, model, [Mode.BASE], [tokens] * slots, smoke)
        r = _compare(g, model, device, reqs, slots, {"eager": {"ignore_eos": True},
                                                     label: {"ignore_eos": True, "cuda_graphs": graphs}}, g.REPEATS)
        eager, graph = r["eager"], r[label]
        note = " CAPTURE FAILED, eager" if graph["graphs_failed"] else ""
        rep.add("(e)", f"decode base slots={slots} {tokens} tok/page: eager vs {label}",
                f"{eager['decode_tok_s']:,.0f} vs {graph['decode_tok_s']:,.0f} tok/s in decode steps "
                f"(x{graph['decode_tok_s'] / max(eager['decode_tok_s'], 1e-9):.2f}); graphs captured "
                f"{graph['captured']}, replays {graph['replays']}{note}; {g.agreement(eager['ids'], graph['ids'])}",
                {"eager": _record(eager), "graphs": _record(graph)})


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
            r = results[name] = _compare(g, model, device, reqs, pages if smoke else 16,
                                         {name: {"ignore_eos": True, **opts}}, g.REPEATS)[name]
        except Exception as exc:  # noqa: BLE001 - one kernel failing must not hide the others
            rep.fail("(f)", exc)
            continue
        first = next(iter(results))
        rep.add("(f)", f"prefill {pages} pages (gundam/base/small) {name}",
                f"{r['prefill_tok_s']:,.0f} prefill tok/s ({r['prefill_tokens']:,.0f} tokens in "
                f"{r['prefill_s']:.2f} s); first tokens vs {first}: "
                f"{sum(a == b for a, b in zip(r['ids'], results[first]['ids'], strict=True))}/{pages} equal",
                _record(r))


def part_g(g: Any, rep: Any, device: torch.device, smoke: bool, model, deadline: float) -> None:
    """Side-stream vision encoding on/off under continuous arrivals."""
    k = g.SMOKE_SCALE
    slots, pages = (3 + k - 1, 5 * k) if smoke else (64, 128)
    lengths = g.page_lengths(pages, seed=1, lo=3 if smoke else 20, hi=16 * k if smoke else 500,
                             median=6 * k if smoke else 120)
    reqs = lambda: g.make_requests(model, [Mode.BASE, Mode.GUNDAM, Mode.SMALL], lengths, smoke)  # noqa: E731
    if time.monotonic() > deadline:
        rep.add("(g)", "encode on a side stream", "skipped: time budget spent")
        return
    out = _compare(g, model, device, reqs, slots, {"in line": {"ignore_eos": True},
                                                   "side stream": {"ignore_eos": True, "overlap": True}}, g.REPEATS)
    for name, r in out.items():
        rep.add("(g)", f"encode {name} slots={slots} pages={pages}",
                f"{r['tok_s']:,.0f} tok/s, {r['pages_s']:.2f} pages/s, {r['wall_s']:.1f} s", _record(r))
    a, b = out["in line"], out["side stream"]
    rep.add("(g)", "side stream / in line", f"pages/s x{b['pages_s'] / a['pages_s']:.2f}; outputs identical: "
            f"{a['ids'] == b['ids']}")
