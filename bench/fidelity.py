"""End-to-end fidelity check: deepocr's DeepSeek-OCR vs the official HF remote code, token for token.

Both implementations load the same random float32 checkpoint (written here with deepocr's own
generator: full-size SAM/CLIP tower and 1280-wide decoder, because the official code hard-codes
those, but only 2 decoder layers: layer 0 dense, layer 1 MoE with the real 64 routed experts, top-6,
2 shared) and run greedy decoding on the same rendered pages in every mode. The table compares the
prompt ids, the number of vision embeddings, the generated ids and the first generated position's
logits (top-5 ids, and the largest absolute difference over the whole vocabulary).

The official side runs in a subprocess under an interpreter with the official pins
(transformers==4.46.3, tokenizers==0.20.3, einops, addict, easydict, torchvision); it imports the
official remote-code files from ``--official-dir`` (nothing of them is copied into this repository)
and calls their own ``infer()`` with only these changes, all needed to run on CPU in float32:

* ``torch.Tensor.cuda`` is the identity;
* inside ``modeling_deepseekocr`` the name ``torch.bfloat16`` resolves to ``torch.float32``, so the
  pixel tensors are not rounded to bf16 (the ``torch.autocast("cuda")`` block is inert on CPU);
* ``model.generate`` is wrapped: same inputs, but ``do_sample=False``, ``max_new_tokens`` and
  ``no_repeat_ngram_size`` as chosen here, no streamer, and the raw first-step logits are kept.

Usage (6 to 10 minutes on 2 CPU cores, about 8 GB RAM; --cases runs a subset)::

    .venv/bin/python bench/fidelity.py --official-dir DIR --official-python /path/to/venv/bin/python

``DIR`` holds ``modeling_deepseekocr.py``, ``modeling_deepseekv2.py``, ``deepencoder.py``,
``conversation.py`` and ``configuration_deepseek_v2.py`` from the official ``deepseek-ai/DeepSeek-OCR``
model repository. Exit status 0 when every case matches.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: (name, image, mode, max tiles). Official infer() arguments per mode: (base_size, image_size, crop_mode).
CASES: list[tuple[str, str, str, int]] = [
    ("a4-tiny", "a4", "tiny", 6),
    ("a4-small", "a4", "small", 6),
    ("a4-base", "a4", "base", 6),
    ("a4-large", "a4", "large", 6),
    ("a4-gundam", "a4", "gundam", 6),  # 2x3 tiles with either limit
    ("wide-gundam-9", "wide", "gundam", 9),  # HF's 2..9 tiles: 4x2
    ("small-gundam", "small", "gundam", 6),  # both sides <= 640: no tiles
]
MODE_ARGS = {
    "tiny": (512, 512, False),
    "small": (640, 640, False),
    "base": (1024, 1024, False),
    "large": (1280, 1280, False),
    "gundam": (1024, 640, True),
}
#: Decoder shrunk for CPU time; everything the official code hard-codes stays full size.
DECODER_OVERRIDES = {"num_hidden_layers": 2, "intermediate_size": 1024, "moe_intermediate_size": 128}
PROMPT = "<image>\n<|grounding|>Convert the document to markdown."
OFFICIAL_FILES = (
    "modeling_deepseekocr.py",
    "modeling_deepseekv2.py",
    "deepencoder.py",
    "conversation.py",
    "configuration_deepseek_v2.py",
)


# --------------------------------------------------------------------------------------------------
# Official side (runs under --official-python; imports nothing from deepocr_cli)
# --------------------------------------------------------------------------------------------------


def _import_torchvision() -> None:
    """Import torchvision, tolerating a wheel whose compiled ops don't match the installed torch.

    The official code only uses torchvision's pure-Python ToTensor/Normalize/Compose; a CUDA wheel
    next to a CPU torch fails while registering fake kernels for its C++ ops, which are never used.
    """
    try:
        import torchvision  # noqa: F401

        return
    except Exception:  # noqa: BLE001 - retried below
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
    import torch.library

    original = torch.library.register_fake
    torch.library.register_fake = lambda *a, **k: lambda fn: fn
    try:
        import torchvision  # noqa: F401
        from torchvision import transforms  # noqa: F401
    finally:
        torch.library.register_fake = original


def run_official(official_dir: Path, checkpoint: Path, cases: list[dict], out: Path, threads: int) -> None:
    """Load the official model in float32 on CPU and run ``infer()`` for each case; write JSON to ``out``."""
    import types

    import torch

    torch.set_num_threads(threads)
    _import_torchvision()
    pkg_root = Path(tempfile.mkdtemp(prefix="dsocr-official-"))
    pkg = pkg_root / "deepseek_ocr_official"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in OFFICIAL_FILES:
        shutil.copy(official_dir / name, pkg / name)
    sys.path.insert(0, str(pkg_root))
    from deepseek_ocr_official import modeling_deepseekocr as official
    from transformers import AutoTokenizer

    torch.Tensor.cuda = lambda self, *a, **k: self  # CPU run

    class _TorchWithoutBf16(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            return getattr(torch, name)

    proxy = _TorchWithoutBf16("torch")
    proxy.bfloat16 = torch.float32  # the pixel casts in infer() become float32 no-ops
    official.torch = proxy

    config = official.DeepseekOCRConfig.from_pretrained(checkpoint)
    model, info = official.DeepseekOCRForCausalLM.from_pretrained(
        checkpoint, config=config, torch_dtype=torch.float32, output_loading_info=True
    )
    missing = [k for k in info["missing_keys"] if not k.endswith("position_ids")]
    if missing or info["unexpected_keys"] or info["mismatched_keys"]:
        raise SystemExit(f"checkpoint does not fit the official model: {info}")
    model = model.eval()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    original_generate = model.generate
    results = []
    for case in cases:
        record: dict[str, Any] = {"name": case["name"]}

        def generate(input_ids, images, images_seq_mask, images_spatial_crop, record=record, case=case, **_):
            crops, ori = images[0]
            record["pixel_dtypes"] = [str(crops.dtype), str(ori.dtype)]
            record["prompt_ids"] = input_ids[0].tolist()
            record["num_vision_tokens"] = int(images_seq_mask.sum())
            record["grid"] = [int(v) for v in images_spatial_crop[0]]
            out = original_generate(
                input_ids,
                images=images,
                images_seq_mask=images_seq_mask,
                images_spatial_crop=images_spatial_crop,
                do_sample=False,
                eos_token_id=1,
                max_new_tokens=case["max_new_tokens"],
                no_repeat_ngram_size=case["ngram"],
                use_cache=True,
                return_dict_in_generate=True,
                output_logits=True,
            )
            record["generated_ids"] = out.sequences[0, input_ids.shape[1] :].tolist()
            first = out.logits[0][0].float()
            vals, ids = first.topk(5)
            record["first_top5"] = [[i, v] for i, v in zip(ids.tolist(), vals.tolist(), strict=True)]
            torch.save(first.clone(), Path(case["logits_path"]))
            return out.sequences

        model.generate = generate
        base_size, image_size, crop_mode = case["mode_args"]
        t0 = time.perf_counter()
        with torch.no_grad():
            model.infer(
                tokenizer,
                prompt=case["prompt"],
                image_file=case["image"],
                output_path=case["scratch"],
                base_size=base_size,
                image_size=image_size,
                crop_mode=crop_mode,
                save_results=False,
            )
        record["seconds"] = round(time.perf_counter() - t0, 1)
        results.append(record)
        print(f"official {case['name']}: {record['seconds']} s", file=sys.stderr, flush=True)
    out.write_text(json.dumps(results))


# --------------------------------------------------------------------------------------------------
# deepocr side
# --------------------------------------------------------------------------------------------------


def build_checkpoint(folder: Path, seed: int, head_scale: float, embed_scale: float) -> dict[str, Any]:
    """Write the test checkpoint with deepocr's generator; return its decoder shape for the report.

    Weights: deepocr's test init (norms 1, biases 0, the rest N(0, 0.02)), then ``lm_head`` scaled
    by ``head_scale`` so the logits spread widely (std ~0.7 * head_scale) and greedy choices are
    not near-ties, and ``embed_tokens`` by ``embed_scale``: at init scale (rms 0.02) a text token is
    drowned by the projected vision embeddings (rms ~1) it attends to, and greedy decoding repeats
    one token forever; at rms ~1 each step depends on the current token too, so the generated ids
    walk through the vocabulary and exercise the KV cache and positions.
    """
    import copy

    import torch

    from deepocr_cli.model.configuration import DeepOcrConfig
    from deepocr_cli.model.modeling import DeepOcrForCausalLM
    from deepocr_cli.model.testing import (
        _init_tensor,
        checkpoint_config,
        write_safetensors_stream,
        write_tokenizer,
    )

    folder.mkdir(parents=True, exist_ok=True)
    config = checkpoint_config("full")
    for part in (config, config["language_config"]):
        part.update(DECODER_OVERRIDES)
        part["torch_dtype"] = "float32"
    config["_name_or_path"] = "deepocr-fidelity"
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    write_tokenizer(folder)
    cfg = DeepOcrConfig.from_dict(copy.deepcopy(config))
    with torch.device("meta"):
        skeleton = DeepOcrForCausalLM(cfg)
    shapes = {name: (torch.float32, tuple(t.shape)) for name, t in skeleton.state_dict().items()}

    def tensors():
        gen = torch.Generator().manual_seed(seed)
        for name, (_, shape) in shapes.items():
            t = _init_tensor(name, torch.Size(shape), gen)
            if name == "lm_head.weight":
                t *= head_scale
            elif name == "model.embed_tokens.weight":
                t *= embed_scale
            yield name, t

    write_safetensors_stream(folder / "model.safetensors", tensors(), shapes)
    dec = cfg.decoder
    return {
        "hidden": dec.hidden_size,
        "heads": dec.num_attention_heads,
        "layers": dec.num_hidden_layers,
        "dense_intermediate": dec.intermediate_size,
        "experts": f"{dec.n_routed_experts} routed top-{dec.num_experts_per_tok} + {dec.n_shared_experts} shared",
        "moe_intermediate": dec.moe_intermediate_size,
        "vocab": dec.vocab_size,
        "params": sum(math.prod(s) for _, s in shapes.values()),
        "lm_head_scale": head_scale,
        "embed_scale": embed_scale,
    }


def render_images(folder: Path) -> dict[str, Path]:
    """Text pages rendered with PyMuPDF: A4 portrait at 144 dpi (1191x1684), 1920x1080, 600x400."""
    import fitz  # PyMuPDF

    words = [
        "DeepSeek",
        "OCR",
        "compresses",
        "a",
        "page",
        "into",
        "a",
        "few",
        "hundred",
        "vision",
        "tokens",
        "and",
        "decodes",
        "markdown",
        "text",
        "with",
        "layout",
        "boxes;",
        "this",
        "paragraph",
        "is",
        "filler",
        "that",
        "looks",
        "like",
        "a",
        "real",
        "document",
    ]
    out = {}
    for name, (w, h) in {"a4": (595.276, 841.89), "wide": (960, 540), "small": (300, 200)}.items():
        doc = fitz.open()
        page = doc.new_page(width=w, height=h)
        page.insert_text((36, 48), f"Fidelity test page: {name}", fontsize=18)
        y, k = 80, 0
        while y < h - 30:
            line = " ".join(words[(k + j) % len(words)] for j in range(int(w // 45)))
            page.insert_text((36, y), f"{k + 1:>3}. {line}", fontsize=9)
            y, k = y + 14, k + 1
            if k % 12 == 0:
                page.draw_rect(fitz.Rect(36, y - 6, w - 36, y + 40), color=(0, 0, 0))
                page.insert_text((44, y + 14), "| col A | col B | col C |", fontsize=10)
                y += 56
        pix = page.get_pixmap(matrix=fitz.Matrix(2, 2), alpha=False)
        path = folder / f"{name}.png"
        pix.save(path)
        out[name] = path
    return out


def run_deepocr(checkpoint: Path, cases: list[dict], threads: int) -> list[dict]:
    """Run deepocr's engine in-process in float32 on CPU, one request per case."""
    import torch
    from PIL import Image

    from deepocr_cli.engine import load_engine
    from deepocr_cli.model import NGramConfig
    from deepocr_cli.planning.modes import Mode

    torch.set_num_threads(threads)
    engine = load_engine(str(checkpoint), device="cpu", dtype="float32")
    model = engine.model
    forward_logits = model.forward_logits
    captured: list[torch.Tensor] = []

    def capture(*args, **kwargs):
        logits = forward_logits(*args, **kwargs)
        if not captured:
            captured.append(logits[0].float().clone())  # the prefill: first generated position
        return logits

    model.forward_logits = capture
    results = []
    for case in cases:
        captured.clear()
        img = Image.open(case["image"])
        img.load()
        t0 = time.perf_counter()
        req = engine.prepare(img, Mode(case["mode"]), case["prompt"], 2, case["max_tiles"])
        ngram = NGramConfig(size=case["ngram"] or 20, window=case["ngram_window"], enabled=case["ngram"] > 0)
        (res,) = engine.generate([req], max_new_tokens=case["max_new_tokens"], ngram=ngram)
        results.append(
            {
                "name": case["name"],
                "prompt_ids": res.prompt_ids,
                "num_vision_tokens": res.num_image_embeddings,
                "grid": list(req.image.grid),
                "generated_ids": res.token_ids,
                "first_top5": [[i, v] for i, v in res.first_top5],
                "logits": captured[0],
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
        print(f"deepocr  {case['name']}: {results[-1]['seconds']} s", file=sys.stderr, flush=True)
    return results


def compare(cases: list[dict], ours: list[dict], theirs: list[dict]) -> bool:
    """Print the per-case table; return whether everything matched."""
    import torch

    header = (
        f"{'case':<15}{'mode':<7}{'grid':<6}{'prompt=':<8}{'vision ours/HF':<16}{'gen=':<6}"
        f"{'n gen':<6}{'top5=':<6}{'max|dlogit| top5':<18}{'max|dlogit| all':<17}{'rel':<9}"
    )
    print(header)
    print("-" * len(header))
    ok_all = True
    for case, a, b in zip(cases, ours, theirs, strict=True):
        ref = torch.load(case["logits_path"])
        top_a = [i for i, _ in a["first_top5"]]
        top_b = [i for i, _ in b["first_top5"]]
        d_top = max(abs(va - vb) for (_, va), (_, vb) in zip(a["first_top5"], b["first_top5"], strict=True))
        d_all = float((a["logits"] - ref).abs().max())
        rel = d_all / float(ref.abs().max())
        same_prompt = a["prompt_ids"] == b["prompt_ids"]
        same_gen = a["generated_ids"] == b["generated_ids"]
        ok = (
            same_prompt
            and same_gen
            and top_a == top_b
            and a["num_vision_tokens"] == b["num_vision_tokens"]
            and rel < 1e-4
        )
        ok_all &= ok
        grid = "x".join(map(str, a["grid"]))
        print(
            f"{case['name']:<15}{case['mode']:<7}{grid:<6}{str(same_prompt):<8}"
            f"{a['num_vision_tokens']}/{b['num_vision_tokens']:<12}{str(same_gen):<6}"
            f"{len(a['generated_ids']):<6}{str(top_a == top_b):<6}{d_top:<18.2e}{d_all:<17.2e}{rel:<9.1e}"
            + ("" if ok else "  MISMATCH")
        )
        if not same_gen:
            print(f"    ours: {a['generated_ids']}\n    HF:   {b['generated_ids']}")
        if b.get("pixel_dtypes") and any("bfloat16" in d for d in b["pixel_dtypes"]):
            print("    warning: the official pixels were bf16 (the float32 patch did not take)")
    return ok_all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--official-dir", type=Path, required=True, help="folder with the official remote code"
    )
    parser.add_argument("--official-python", default=None, help="interpreter with transformers==4.46.3")
    parser.add_argument("--workdir", type=Path, default=None, help="keep checkpoint/images/results here")
    parser.add_argument("--cases", default=",".join(c[0] for c in CASES), help="comma-separated case names")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument(
        "--ngram",
        type=int,
        default=0,
        help="no-repeat n-gram size for both sides (0 = off). HF applies it to the whole sequence, "
        "deepocr to generated ids in a window, so only sizes > max-new-tokens are comparable",
    )
    parser.add_argument("--ngram-window", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--head-scale", type=float, default=4.0, help="lm_head multiplier (logit spread)")
    parser.add_argument("--embed-scale", type=float, default=50.0, help="embed_tokens multiplier")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--driver", type=Path, default=None, help=argparse.SUPPRESS)  # internal: cases JSON
    parser.add_argument("--checkpoint", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.driver is not None:
        cases = json.loads(args.driver.read_text())
        run_official(args.official_dir, args.checkpoint, cases, args.out, args.threads)
        return 0
    if args.official_python is None:
        parser.error("--official-python is required")
    missing = [n for n in OFFICIAL_FILES if not (args.official_dir / n).is_file()]
    if missing:
        parser.error(f"--official-dir lacks {', '.join(missing)}")

    work = args.workdir or Path(tempfile.mkdtemp(prefix="deepocr-fidelity-"))
    work.mkdir(parents=True, exist_ok=True)
    ckpt = work / "checkpoint"
    t0 = time.perf_counter()
    shape = build_checkpoint(ckpt, args.seed, args.head_scale, args.embed_scale)
    images = render_images(work)
    print(f"checkpoint {ckpt} ({time.perf_counter() - t0:.0f} s): {shape}", file=sys.stderr)
    wanted = [n.strip() for n in args.cases.split(",") if n.strip()]
    cases = []
    for name, image, mode, max_tiles in CASES:
        if name not in wanted:
            continue
        cases.append(
            {
                "name": name,
                "image": str(images[image]),
                "mode": mode,
                "mode_args": MODE_ARGS[mode],
                "max_tiles": max_tiles,
                "prompt": PROMPT,
                "max_new_tokens": args.max_new_tokens,
                "ngram": args.ngram,
                "ngram_window": args.ngram_window,
                "scratch": str(work / "scratch"),
                "logits_path": str(work / f"official-logits-{name}.pt"),
            }
        )
    (work / "cases.json").write_text(json.dumps(cases, indent=2))
    official_out = work / "official.json"
    cmd = [
        args.official_python,
        str(Path(__file__).resolve()),
        "--official-dir",
        str(args.official_dir.resolve()),
        "--driver",
        str(work / "cases.json"),
        "--checkpoint",
        str(ckpt),
        "--out",
        str(official_out),
        "--threads",
        str(args.threads),
    ]
    subprocess.run(cmd, check=True)
    theirs = json.loads(official_out.read_text())
    ours = run_deepocr(ckpt, cases, args.threads)
    print(
        f"\ncheckpoint: full SAM-B + CLIP-L, decoder hidden {shape['hidden']} / {shape['heads']} heads, "
        f"{shape['layers']} layers (dense {shape['dense_intermediate']}; MoE {shape['experts']}, "
        f"width {shape['moe_intermediate']}), vocab {shape['vocab']}, {shape['params'] / 1e6:.0f}M params fp32, "
        f"lm_head x{shape['lm_head_scale']}, embed_tokens x{shape['embed_scale']}; greedy, {args.max_new_tokens} new tokens, "
        f"n-gram {'off' if args.ngram == 0 else args.ngram}\n"
    )
    ok = compare(cases, ours, theirs)
    print("\nALL MATCH" if ok else "\nMISMATCHES FOUND")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
