"""Random DeepSeek-OCR-2 checkpoints in either layout (original or transformers-native), for tests and demos.

The same ``seed`` writes the same weights in both layouts: tensors are drawn in original-key order
and, for the native layout, renamed and the routed experts of each MoE layer fused
(``gate_up_proj`` [E, 2I, H], ``down_proj`` [E, H, I]) as transformers stores them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from deepocr_cli import prompts as prompt_strings
from deepocr_cli.model.ocr2_config import NATIVE, ORIGINAL, QWEN2_KEY
from deepocr_cli.model.ocr2_layout import _EXPERT, native_key
from deepocr_cli.model.testing import (
    _FULL_DECODER,
    _FULL_SAM,
    _TINY_DECODER,
    _TINY_SAM,
    _init_tensor,
    random_weights,
    write_safetensors_stream,
)

log = logging.getLogger(__name__)

_FULL_ENCODER = {"dim": 896, "layers": 24, "heads": 14, "kv_heads": 2, "intermediate_size": 4864}
_TINY_ENCODER = {"dim": 64, "layers": 2, "heads": 4, "kv_heads": 2, "intermediate_size": 96}


def ocr2_checkpoint_config(size: str = "tiny", layout: str = ORIGINAL) -> dict[str, Any]:
    """config.json of a random OCR-2 checkpoint ("tiny" or "full") in the ``layout`` given.

    The full original config reproduces the official file, stale SAM ``downsample_channels``
    [512, 1024] and the bare ``{"dim": 896}`` encoder entry included.
    """
    if size not in ("tiny", "full") or layout not in (ORIGINAL, NATIVE):
        raise ValueError(f"size must be tiny/full and layout original/native, got {size!r}, {layout!r}")
    tiny = size == "tiny"
    decoder = {**_FULL_DECODER, **(_TINY_DECODER if tiny else {})}
    enc = _TINY_ENCODER if tiny else _FULL_ENCODER
    sam = {**_FULL_SAM, **(_TINY_SAM if tiny else {})}
    sam["downsample_channels"] = [sam["downsample_channels"][0], enc["dim"]] if tiny else [512, 1024]
    dtype = "float32" if tiny else "bfloat16"
    if layout == ORIGINAL:
        return {
            "_name_or_path": f"deepocr-random-ocr2-{size}",
            "architectures": ["DeepseekOCR2ForCausalLM"],
            "candidate_resolutions": [[1024, 1024]],
            "global_view_pos": "head",
            "language_config": {"architectures": ["DeepseekV2ForCausalLM"], "torch_dtype": dtype, **decoder},
            "model_type": "deepseek_vl_v2",
            "projector_config": {
                "input_dim": enc["dim"],
                "model_type": "mlp_projector",
                "n_embed": decoder["hidden_size"],
                "projector_type": "linear",
            },
            "tile_tag": "2D",
            "torch_dtype": dtype,
            "vision_config": {
                "image_size": 1024,
                "mlp_ratio": 3.7362,
                "model_name": "deepencoderv2",
                "model_type": "vision",
                "width": {QWEN2_KEY: enc if tiny else {"dim": 896}, "sam_vit_b": sam},
            },
            **decoder,
        }
    first_dense = decoder["first_k_dense_replace"]
    layers = decoder["num_hidden_layers"]
    text = {
        "model_type": "deepseek_ocr2_text",
        "vocab_size": decoder["vocab_size"],
        "hidden_size": decoder["hidden_size"],
        "intermediate_size": decoder["intermediate_size"],
        "moe_intermediate_size": decoder["moe_intermediate_size"],
        "num_hidden_layers": layers,
        "num_attention_heads": decoder["num_attention_heads"],
        "num_key_value_heads": decoder["num_key_value_heads"],
        "n_routed_experts": decoder["n_routed_experts"],
        "n_shared_experts": decoder["n_shared_experts"],
        "num_experts_per_tok": decoder["num_experts_per_tok"],
        "mlp_layer_types": ["dense"] * first_dense + ["sparse"] * (layers - first_dense),
        "max_position_embeddings": decoder["max_position_embeddings"],
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
        "attention_bias": False,
        "routed_scaling_factor": 1.0,
        "topk_method": "greedy",
        "n_group": 1,
        "topk_group": 1,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "pad_token_id": 2,
        "hidden_act": "silu",
    }
    sam_native = {
        "model_type": "deepseek_ocr2_sam_vision_model",
        "hidden_size": sam["width"],
        "num_hidden_layers": sam["layers"],
        "num_attention_heads": sam["heads"],
        "global_attn_indexes": sam["global_attn_indexes"],
        "mlp_dim": sam.get("mlp_dim", 4 * sam["width"]),
        "output_channels": sam.get("out_chans", 256),
        "downsample_channels": [sam["downsample_channels"][0], enc["dim"]],
        "image_size": 1024,
        "patch_size": 16,
        "window_size": 14,
        "layer_norm_eps": 1e-6,
    }
    encoder = {
        "model_type": "deepseek_ocr2_encoder",
        "hidden_size": enc["dim"],
        "num_hidden_layers": enc["layers"],
        "num_attention_heads": enc["heads"],
        "num_key_value_heads": enc["kv_heads"],
        "intermediate_size": enc["intermediate_size"],
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_theta": 1_000_000.0, "rope_type": "default"},
        "max_position_embeddings": 131072,
    }
    return {
        "architectures": ["DeepseekOcr2ForConditionalGeneration"],
        "model_type": "deepseek_ocr2",
        "image_token_id": 128815,
        "tie_word_embeddings": False,
        "dtype": dtype,
        "text_config": text,
        "vision_config": {
            "model_type": "deepseek_ocr2_vision",
            "sam_config": sam_native,
            "encoder_config": encoder,
        },
    }


def _init(name: str, shape: torch.Size, gen: torch.Generator) -> torch.Tensor:
    """v1's init, but random biases: the encoder's q/k/v biases must matter in fidelity tests."""
    if name.endswith(".bias"):
        return torch.randn(shape, generator=gen) * 0.02
    return _init_tensor(name, shape, gen)


def _native_plan(shapes: dict[str, tuple]) -> tuple[dict[str, tuple], dict[str, list[str]]]:
    """Native file order and shapes, and for each fused tensor the original keys it stacks (in order).

    A fused tensor is written when its last piece (the layer's last expert's up or down weight) is drawn.
    """
    parts: dict[str, list[str]] = {}
    for name in shapes:
        src = native_key(name)
        if src.expert is not None:
            parts.setdefault(src.key, []).append(name)
    last_piece = {pieces[-1]: key for key, pieces in parts.items()}
    ordered: dict[str, tuple] = {}
    for name, (dtype, shape) in shapes.items():
        src = native_key(name)
        if src.expert is None:
            ordered[src.key] = (dtype, shape)
        elif name in last_piece:
            key = last_piece[name]
            rows, cols = shapes[parts[key][0]][1]
            experts = len({int(_EXPERT.match(p).group(2)) for p in parts[key]})  # type: ignore[union-attr]
            ordered[key] = (dtype, (experts, rows * (2 if key.endswith("gate_up_proj") else 1), cols))
    return ordered, parts


def _fused(key: str, pieces: list[str], drawn: dict[str, torch.Tensor]) -> torch.Tensor:
    """Stack drawn expert tensors into transformers' fused layout and drop them from ``drawn``."""
    experts = sorted({int(_EXPERT.match(p).group(2)) for p in pieces})  # type: ignore[union-attr]
    layer_prefix = pieces[0].rsplit(".experts.", 1)[0] + ".experts."
    if key.endswith("gate_up_proj"):
        out = torch.stack(
            [
                torch.cat(
                    [drawn[f"{layer_prefix}{e}.gate_proj.weight"], drawn[f"{layer_prefix}{e}.up_proj.weight"]]
                )
                for e in experts
            ]
        )
    else:
        out = torch.stack([drawn[f"{layer_prefix}{e}.down_proj.weight"] for e in experts])
    for p in pieces:
        drawn.pop(p, None)
    return out


def write_random_ocr2_checkpoint(
    path: str | Path,
    *,
    size: str = "tiny",
    layout: str = ORIGINAL,
    seed: int = 0,
    script: str | None = None,
    prompts: Sequence[str] = tuple(prompt_strings.TASK_PROMPTS.values()),
) -> Path:
    """Write a random DeepSeek-OCR-2 checkpoint folder (see :func:`deepocr_cli.model.write_random_checkpoint`).

    Args:
        path: folder to create (or fill).
        size: "tiny" (seconds on CPU, fp32) or "full" (the released geometry, bf16, ~6.8 GB).
        layout: "original" (deepseek-ai key names) or "native" (transformers' names, fused experts).
        seed: the same seed gives the same weights in both layouts.
        script: text the model emits (then EOS) whatever the image; None: it never stops on its own.
        prompts: prompts the scripted model answers.
    """
    from deepocr_cli.model.ocr2_config import DeepOcr2Config
    from deepocr_cli.model.ocr2_modeling import DeepOcr2ForCausalLM

    folder = Path(path)
    shapes, weights = random_weights(folder, ocr2_checkpoint_config(size, layout), DeepOcr2Config,
                                     DeepOcr2ForCausalLM, size, seed, script, prompts, init=_init)

    if layout == ORIGINAL:
        write_safetensors_stream(folder / "model.safetensors", weights, shapes)
    else:
        ordered, parts = _native_plan(shapes)
        last_piece = {pieces[-1]: key for key, pieces in parts.items()}

        def native_items() -> Iterable[tuple[str, torch.Tensor]]:
            drawn: dict[str, torch.Tensor] = {}
            for name, t in weights:
                src = native_key(name)
                if src.expert is None:
                    yield src.key, t
                    continue
                drawn[name] = t
                if name in last_piece:
                    key = last_piece[name]
                    yield key, _fused(key, parts[key], drawn)

        write_safetensors_stream(folder / "model.safetensors", native_items(), ordered)
    log.info("wrote random %s OCR-2 checkpoint (%s layout) to %s", size, layout, folder)
    return folder
