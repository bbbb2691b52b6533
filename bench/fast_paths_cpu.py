"""The engine's CUDA fast paths on CPU, forward by forward: what they cost where they cannot help, and that they agree.

    python bench/fast_paths_cpu.py                # tiny random model, 8 Base pages, 30 interleaved repetitions

On a shared CPU, whole-run timings swing by 2-10x with the other jobs on the machine; this script times single
forwards on one fixed cache state instead, the variants taking turns, and prints medians:

  decode   the normal decode step (``PagedKVCache.batch`` + forward) versus the graph-shaped step of
           ``--cuda-graphs`` (static buffers, batch padded to the next captured size, SDPA key span rounded up to
           a power of two of blocks), run eagerly (capture needs CUDA), at 1 .. slots rows;
  prefill  the padded SDPA prefill versus packed FlexAttention (eager on CPU) versus our varlen packing with
           ``sdpa_varlen`` standing in for flash_attn_varlen_func, on chunks of different lengths.

Each row also says whether the variants' logits agree (max abs difference, same argmax). A GPU is where these
paths are meant to pay: bench/gpu_check.py (e)-(f) measures them there.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import gpu_check as g  # noqa: E402

from deepocr_cli.engine.attention import pack, sdpa_varlen  # noqa: E402
from deepocr_cli.planning.modes import Mode  # noqa: E402


def interleaved(fns: dict[str, callable], reps: int) -> dict[str, float]:
    """Median seconds per call of each function, the functions taking turns ``reps`` times (after one warm-up)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(reps):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def agree(a: torch.Tensor, b: torch.Tensor) -> str:
    return f"max |diff| {float((a - b).abs().max()):.1e}, same argmax {bool(torch.equal(a.argmax(-1), b.argmax(-1)))}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = g.build_model("tiny", torch.device("cpu"), torch.float32)
    sched = g.scheduler(model, args.slots, ignore_eos=True, cuda_graphs="eager", prefill_attention="sdpa")
    for r in g.make_requests(model, [Mode.BASE, Mode.SMALL, Mode.GUNDAM], [10_000] * args.slots, True):
        sched.add(r)
    while sched.waiting or any(not s.decoding for s in sched.running):
        sched.step()
    rows = sorted(sched.running, key=lambda s: s.admitted)
    graphs = sched.graphs
    assert graphs is not None
    print(f"tiny random model, {args.slots} pages decoding (contexts {min(s.cached for s in rows)}.."
          f"{max(s.cached for s in rows)}), {args.reps} interleaved repetitions, {args.threads} thread(s)\n")
    print(f"{'decode rows':<12} {'padded to':>9} {'normal ms':>10} {'graph-shaped ms':>16} {'ratio':>6}  logits")
    with torch.inference_mode():
        for b in sorted({1, 3, max(1, args.slots // 2 + 1), args.slots}):
            part = rows[:b]
            slots, cached = [s.slot for s in part], [s.cached for s in part]
            tokens = torch.tensor([s.generated[-1] for s in part])

            def normal(slots=slots, cached=cached, tokens=tokens, b=b):
                paged = sched.cache.batch(slots, cached, [1] * b)
                embeds = model.token_embeddings(tokens[:, None])
                return model.forward_logits(embeds, paged.positions, paged.valid, paged,
                                            last_index=torch.zeros(b, dtype=torch.long))

            def shaped(slots=slots, cached=cached, tokens=tokens):
                return graphs.step(tokens, slots, cached)

            t = interleaved({"normal": normal, "shaped": shaped}, args.reps)
            print(f"{b:<12} {graphs.size_for(b):>9} {t['normal'] * 1e3:>10.2f} {t['shaped'] * 1e3:>16.2f} "
                  f"{t['shaped'] / t['normal']:>6.2f}  {agree(normal(), shaped().clone())}")

        # Prefill: re-run chunks of the first pages' prompts at their own positions (the same K/V is written again).
        chunks = [(rows[0], 0, 40), (rows[1], 17, 90), (rows[2], 0, min(rows[2].cached, 600))]
        slots = [s.slot for s, _, _ in chunks]
        cached, new = [c for _, c, _ in chunks], [n for _, _, n in chunks]
        hidden = model.config.decoder.hidden_size
        torch.manual_seed(0)
        inputs = [torch.randn(n, hidden) * 0.02 for n in new]

        def padded():
            paged = sched.cache.batch(slots, cached, new)
            x = torch.zeros(len(new), max(new), hidden)
            for i, t in enumerate(inputs):
                x[i, : len(t)] = t
            return model.forward_logits(x, paged.positions, paged.valid, paged,
                                        last_index=torch.tensor([n - 1 for n in new]))

        def packed(kernel):
            def run():
                p = pack(sched.cache, slots, cached, new, kernel, sdpa_varlen)
                return model.forward_logits(torch.cat(inputs)[None], p.positions, p.valid, p, last_index=p.last)
            return run

        t = interleaved({"sdpa": padded, "flex": packed("flex"), "varlen": packed("varlen")}, args.reps)
        ref = padded()
        print(f"\n{'prefill chunks':<24} {'kernel':<34} {'ms':>8} {'ratio':>6}  logits vs padded SDPA")
        what = "+".join(str(n) for n in new) + f" new ({sum(new)})"
        for name, label in (("sdpa", "SDPA, padded"), ("flex", "FlexAttention, packed (eager)"),
                            ("varlen", "varlen packing, SDPA stand-in")):
            out = ref if name == "sdpa" else packed(name)()
            print(f"{what:<24} {label:<34} {t[name] * 1e3:>8.2f} {t[name] / t['sdpa']:>6.2f}  {agree(ref, out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
