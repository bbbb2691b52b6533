"""Key names of the two DeepSeek-OCR-2 checkpoint layouts and the mapping between them (facts §8.4, §8.6).

Our modules use the **original** names (``model.sam_model.*``, ``model.qwen2_model.model.model.*``,
per-expert ``mlp.experts.E.{gate,up,down}_proj.weight``, ``model.view_seperator``). The **native**
layout (transformers' ``deepseek_ocr2`` with ``save_original_format=False``) renames every group
and stores each MoE layer's experts fused: ``experts.gate_up_proj`` [E, 2I, H] (gate rows, then up
rows) and ``experts.down_proj`` [E, H, I].

A :class:`TensorSource` says where one of our tensors lives in a checkpoint: a file key plus,
for a fused expert tensor, the index that cuts our expert's slice out of it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

#: (native prefix regex, original replacement), applied in order to every non-expert key.
_NATIVE_TO_ORIGINAL: tuple[tuple[str, str], ...] = (
    (r"^model\.language_model\.", "model."),
    (
        r"^model\.vision_tower\.sam_encoder\.layers\.(\d+)\.layer_norm(\d)\.",
        r"model.sam_model.blocks.\1.norm\2.",
    ),
    (r"^model\.vision_tower\.sam_encoder\.layers\.", "model.sam_model.blocks."),
    (r"^model\.vision_tower\.sam_encoder\.patch_embed\.projection\.", "model.sam_model.patch_embed.proj."),
    (r"^model\.vision_tower\.sam_encoder\.neck\.conv1\.", "model.sam_model.neck.0."),
    (r"^model\.vision_tower\.sam_encoder\.neck\.layer_norm1\.", "model.sam_model.neck.1."),
    (r"^model\.vision_tower\.sam_encoder\.neck\.conv2\.", "model.sam_model.neck.2."),
    (r"^model\.vision_tower\.sam_encoder\.neck\.layer_norm2\.", "model.sam_model.neck.3."),
    (r"^model\.vision_tower\.sam_encoder\.proj\.conv1\.", "model.sam_model.net_2."),
    (r"^model\.vision_tower\.sam_encoder\.proj\.conv2\.", "model.sam_model.net_3."),
    (r"^model\.vision_tower\.sam_encoder\.", "model.sam_model."),
    (r"^model\.vision_tower\.vision_encoder\.", "model.qwen2_model.model.model."),
    (r"^model\.vision_tower\.query_(768|1024)_resolution\.", r"model.qwen2_model.query_\1."),
    (r"^model\.multi_modal_projector\.", "model.projector.layers."),
    (r"^model\.view_separator$", "model.view_seperator"),
)
_ORIGINAL_TO_NATIVE: tuple[tuple[str, str], ...] = (
    (
        r"^model\.sam_model\.blocks\.(\d+)\.norm(\d)\.",
        r"model.vision_tower.sam_encoder.layers.\1.layer_norm\2.",
    ),
    (r"^model\.sam_model\.blocks\.", "model.vision_tower.sam_encoder.layers."),
    (r"^model\.sam_model\.patch_embed\.proj\.", "model.vision_tower.sam_encoder.patch_embed.projection."),
    (r"^model\.sam_model\.neck\.0\.", "model.vision_tower.sam_encoder.neck.conv1."),
    (r"^model\.sam_model\.neck\.1\.", "model.vision_tower.sam_encoder.neck.layer_norm1."),
    (r"^model\.sam_model\.neck\.2\.", "model.vision_tower.sam_encoder.neck.conv2."),
    (r"^model\.sam_model\.neck\.3\.", "model.vision_tower.sam_encoder.neck.layer_norm2."),
    (r"^model\.sam_model\.net_2\.", "model.vision_tower.sam_encoder.proj.conv1."),
    (r"^model\.sam_model\.net_3\.", "model.vision_tower.sam_encoder.proj.conv2."),
    (r"^model\.sam_model\.", "model.vision_tower.sam_encoder."),
    (r"^model\.qwen2_model\.model\.model\.", "model.vision_tower.vision_encoder."),
    (r"^model\.qwen2_model\.query_(768|1024)\.", r"model.vision_tower.query_\1_resolution."),
    (r"^model\.projector\.layers\.", "model.multi_modal_projector."),
    (r"^model\.view_seperator$", "model.view_separator"),
    (r"^model\.(embed_tokens|layers|norm)\b", r"model.language_model.\1"),
)
_EXPERT = re.compile(r"^model\.layers\.(\d+)\.mlp\.experts\.(\d+)\.(gate|up|down)_proj\.weight$")


@dataclass(frozen=True)
class TensorSource:
    """Where one tensor of our model is stored.

    Attributes:
        key: the checkpoint key.
        expert: for a fused expert tensor, the expert index (first dim); None for a plain tensor.
        half: for ``gate_up_proj``, 0 = gate rows, 1 = up rows; None otherwise.
    """

    key: str
    expert: int | None = None
    half: int | None = None


def _rewrite(key: str, rules: Iterable[tuple[str, str]]) -> str:
    for pattern, repl in rules:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    return key


def native_key(original: str) -> TensorSource:
    """Where an original-layout tensor lives in a native checkpoint."""
    match = _EXPERT.match(original)
    if match:
        layer, expert, proj = match.groups()
        prefix = f"model.language_model.layers.{layer}.mlp.experts."
        if proj == "down":
            return TensorSource(prefix + "down_proj", int(expert))
        return TensorSource(prefix + "gate_up_proj", int(expert), 0 if proj == "gate" else 1)
    return TensorSource(_rewrite(original, _ORIGINAL_TO_NATIVE))


def original_key(native: str) -> str:
    """The original name of a native (non-expert) key."""
    return _rewrite(native, _NATIVE_TO_ORIGINAL)


def is_native_layout(keys: Iterable[str]) -> bool:
    """Whether checkpoint keys use the native names (decided on the language-model embedding)."""
    return any(k.startswith(("model.language_model.", "model.vision_tower.")) for k in keys)


def sources_for(model_keys: Iterable[str], checkpoint_keys: Iterable[str]) -> dict[str, TensorSource]:
    """Map every key of our model to its place in a checkpoint of either layout."""
    native = is_native_layout(checkpoint_keys)
    return {k: native_key(k) if native else TensorSource(k) for k in model_keys}
