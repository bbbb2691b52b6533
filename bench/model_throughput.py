"""Model throughput benchmark: prefill/decode time, generated tok/s and pages/s per model, mode and batch size.

``--families ocr1,ocr2`` runs DeepSeek-OCR and DeepSeek-OCR-2 (random checkpoints of the same size) on the same
page in one run, one model loaded at a time, so their rows compare side by side."""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from deepocr_cli.engine import load_engine
from deepocr_cli.model import NGramConfig, write_random_checkpoint
from deepocr_cli.planning.modes import Mode

log = logging.getLogger(__name__)


def _page(width: int = 1191, height: int = 1684) -> Image.Image:
    """A synthetic A4 page at 144 dpi with some text lines."""
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    for y in range(40, height - 40, 36):
        draw.text((60, y), f"Line {y}: the quick brown fox jumps over the lazy dog.", fill="black")
    return img


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print one table row per (mode, batch size)."""
    parser = argparse.ArgumentParser(description=__doc__)
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", type=Path, help="checkpoint folder (any supported layout)")
    src.add_argument("--size", choices=["tiny", "full"], default="tiny", help="random checkpoint to generate")
    parser.add_argument("--modes", default="tiny,base,gundam", help="comma-separated modes")
    parser.add_argument("--families", default="ocr1", help="random checkpoints to compare: ocr1, ocr2 or ocr1,ocr2")
    parser.add_argument("--batch-sizes", default="1,2,4", help="comma-separated batch sizes")
    parser.add_argument("--new-tokens", type=int, default=16, help="fixed output length (EOS ignored)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default=None, help="bf16, fp16 or fp32 (default: bf16 on CUDA, else fp32)")
    parser.add_argument("--no-ngram", action="store_true", help="disable the n-gram blocker")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    modes = [Mode(m.strip()) for m in args.modes.split(",") if m.strip()]
    sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    ngram = NGramConfig(enabled=not args.no_ngram)
    page = _page()
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    header = (
        f"{'model':<6}{'mode':<8}{'tokens':>7}{'batch':>6}{'encode s':>10}{'prefill s':>11}{'decode s':>10}"
        f"{'gen tok/s':>11}{'pages/s':>9}{'peak MB':>10}"
    )
    print(header)
    print("-" * len(header))
    for family in [None] if args.checkpoint else families:
        with tempfile.TemporaryDirectory() as tmp:
            path = args.checkpoint or write_random_checkpoint(Path(tmp) / "ckpt", size=args.size, family=family)
            engine = load_engine(str(path), device=args.device, dtype=args.dtype)
            name = "ocr2" if engine.family.name.endswith("-2") else "ocr1"
            log.warning("%s: device %s, dtype %s, checkpoint %s", name, engine.device, engine.dtype, path)
            for mode in modes:
                request = engine.prepare(page, mode)
                engine.generate([request], max_new_tokens=2, batch_size=1, ngram=ngram, ignore_eos=True)  # warm-up
                for batch in sizes:
                    if engine.device.type == "cuda":
                        torch.cuda.reset_peak_memory_stats(engine.device)
                    engine.metrics = type(engine.metrics)()
                    t0 = time.perf_counter()
                    results = engine.generate(
                        [request] * batch, max_new_tokens=args.new_tokens, batch_size=batch, ngram=ngram,
                        ignore_eos=True,
                    )
                    wall = time.perf_counter() - t0
                    tokens = sum(r.generated_tokens for r in results)
                    st = engine.metrics
                    print(
                        f"{name:<6}{mode.value:<8}{request.image.num_embeddings:>7}{batch:>6}{st.encode_s:>10.3f}"
                        f"{st.prefill_s:>11.3f}{st.decode_s:>10.3f}{tokens / max(st.decode_s, 1e-9):>11.1f}"
                        f"{batch / wall:>9.2f}{_peak_memory_mb(engine.device):>10.0f}",
                        flush=True,
                    )
            del engine
    return 0


if __name__ == "__main__":
    sys.exit(main())
