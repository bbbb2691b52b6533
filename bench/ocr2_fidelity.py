"""DeepSeek-OCR-2 fidelity: deepocr against transformers' native DeepseekOcr2ForConditionalGeneration.

Usage: python bench/ocr2_fidelity.py [--new-tokens 32] [--seed 3]

Writes one random tiny OCR-2 checkpoint in both layouts (same weights; ``lm_head`` x4 and ``embed_tokens`` x50 so
that greedy ids vary step to step), runs transformers (float32, CPU, PIL image processor, ``generate(do_sample=
False)``) and deepocr (native and original layout) on the same pages, and prints one row per page: prompt ids
equal, pixels equal, generated ids equal, max |logit difference| at the first step. The last page has a
global-view padding of 3 mod 4, where the original code and transformers centre the page one pixel apart.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from deepocr_cli import prompts  # noqa: E402
from deepocr_cli.engine.ocr import Engine  # noqa: E402
from deepocr_cli.model import write_random_checkpoint  # noqa: E402
from deepocr_cli.model.engine import NGramConfig, OcrEngine  # noqa: E402
from deepocr_cli.model.loading import load_checkpoint  # noqa: E402
from deepocr_cli.planning.modes import Mode  # noqa: E402

PAGES = {"600x750": (600, 750), "1400x700": (1400, 700), "2048x683": (2048, 683), "1000x1500": (1000, 1500),
         "1002x1400 (pad 3 mod 4)": (1002, 1400)}  # fmt: skip


def page(size: tuple[int, int], seed: int) -> Image.Image:
    """White page, gray text-like bars, one coloured block."""
    gen = torch.Generator().manual_seed(seed)
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    w, h = size
    for i, y in enumerate(range(20, h - 20, 24)):
        draw.rectangle(
            (20, y, int(w * (0.3 + 0.6 * torch.rand(1, generator=gen).item())), y + 10),
            fill=(40 + i % 50, 40, 60),
        )
    draw.rectangle((w // 3, h // 3, w // 2, h // 2), fill=(200, 30, 30))
    return img


def amplify(folder: Path) -> None:
    """Spread the logits (the same rescale in either layout's names)."""
    path = folder / "model.safetensors"
    tensors = load_file(path)
    for key in tensors:
        if key == "lm_head.weight":
            tensors[key] = tensors[key] * 4
        elif key.endswith("embed_tokens.weight"):
            tensors[key] = tensors[key] * 50
    save_file(tensors, path, metadata={"format": "pt"})


def main() -> None:
    """Run both implementations on every page and print the table."""
    from transformers import (
        DeepseekOcr2ForConditionalGeneration,
        DeepseekOcr2ImageProcessorPil,
        DeepseekOcr2Processor,
        PreTrainedTokenizerFast,
    )

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        native = write_random_checkpoint(Path(tmp) / "native", family="ocr2", layout="native", seed=args.seed)
        original = write_random_checkpoint(
            Path(tmp) / "original", family="ocr2", layout="original", seed=args.seed
        )
        amplify(native)
        amplify(original)
        ref = DeepseekOcr2ForConditionalGeneration.from_pretrained(native, dtype=torch.float32).eval()
        proc = DeepseekOcr2Processor(
            image_processor=DeepseekOcr2ImageProcessorPil(),
            tokenizer=PreTrainedTokenizerFast.from_pretrained(native),
        )
        engines = {
            n: Engine(OcrEngine(load_checkpoint(p, device="cpu", dtype="fp32"), str(p)))
            for n, p in (("native", native), ("original", original))
        }
        print(
            "| page | tiles | placeholders | prompt ids equal | pixels equal | ids equal (native / original layout) "
            f"| distinct ids in {args.new_tokens} | max abs logit diff |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for i, (name, size) in enumerate(PAGES.items()):
            img = page(size, i)
            r = proc(images=img, text=prompts.MARKDOWN, return_tensors="pt")
            with torch.inference_mode():
                ref_logits = ref(**r).logits[0, -1]
                ref_ids = ref.generate(**r, do_sample=False, max_new_tokens=args.new_tokens)[
                    0, r["input_ids"].shape[1] :
                ].tolist()
            equal, diff = [], 0.0
            for engine in engines.values():
                req = engine.prepare(img, Mode.GUNDAM)
                model = engine.model
                ids = torch.tensor([req.prompt_ids])
                with torch.inference_mode():
                    embeds = model.embed(ids, engine.special.image, model.encode_images([req.image]))
                    last = torch.tensor([ids.shape[1] - 1])
                    ours = model.forward_logits(
                        embeds,
                        torch.arange(ids.shape[1])[None],
                        torch.ones_like(ids, dtype=torch.bool),
                        last_index=last,
                    )[0]
                diff = max(diff, (ours - ref_logits).abs().max().item())
                (res,) = engine.generate(
                    [req], max_new_tokens=args.new_tokens, ngram=NGramConfig(enabled=False)
                )
                equal.append("yes" if res.token_ids == ref_ids else "no")
            k = req.image.grid[0] * req.image.grid[1] if req.image.tiles is not None else 0
            pixels = torch.equal(req.image.global_view, r["pixel_values"][0]) and (
                k == 0 or torch.equal(req.image.tiles, r["pixel_values_local"])
            )
            print(
                f"| {name} | {k} | {req.image.num_embeddings} | {'yes' if req.prompt_ids == r['input_ids'][0].tolist() else 'no'} "
                f"| {'yes' if pixels else 'no'} | {' / '.join(equal)} | {len(set(ref_ids))} | {diff:.1e} |"
            )


if __name__ == "__main__":
    main()
