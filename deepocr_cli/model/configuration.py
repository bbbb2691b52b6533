"""DeepSeek-OCR model configuration parsed from the official ``config.json`` layout (facts §1.5, §12)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepocr_cli.errors import CheckpointError

if TYPE_CHECKING:
    from deepocr_cli.model.sam import SamConfig
    from deepocr_cli.model.vision import ClipConfig

log = logging.getLogger(__name__)

#: Keys of ``vision_config.width`` holding the two encoder towers.
SAM_KEY = "sam_vit_b"
CLIP_KEY = "clip-l-14-224"

#: Decoder fields the official config.json omits; DeepseekV2Config's defaults apply (facts §12).
DECODER_DEFAULTS: dict[str, Any] = {
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "attention_bias": False,
    "norm_topk_prob": False,
    "routed_scaling_factor": 1.0,
    "scoring_func": "softmax",
    "topk_method": "greedy",
    "moe_layer_freq": 1,
    "hidden_act": "silu",
    "use_mla": False,
    "bos_token_id": 0,
    "eos_token_id": 1,
}


@dataclass(frozen=True)
class DecoderConfig:
    """Dimensions of the DeepSeek-MoE language model (MHA variant).

    Attributes mirror the DeepseekV2 config names so they can be checked against ``config.json``.
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    moe_intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    n_routed_experts: int
    n_shared_experts: int
    num_experts_per_tok: int
    first_k_dense_replace: int
    max_position_embeddings: int
    moe_layer_freq: int = 1
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    attention_bias: bool = False
    norm_topk_prob: bool = False
    routed_scaling_factor: float = 1.0
    scoring_func: str = "softmax"
    topk_method: str = "greedy"
    hidden_act: str = "silu"
    use_mla: bool = False
    bos_token_id: int = 0
    eos_token_id: int = 1

    @property
    def head_dim(self) -> int:
        """Per-head width (hidden / heads; 128 for the released model)."""
        return self.hidden_size // self.num_attention_heads

    def is_moe_layer(self, index: int) -> bool:
        """Whether decoder layer ``index`` uses routed experts (DeepseekV2 rule)."""
        return (
            self.n_routed_experts > 0
            and index >= self.first_k_dense_replace
            and index % self.moe_layer_freq == 0
        )

    def kv_bytes_per_token(self, bytes_per_element: int) -> int:
        """KV-cache bytes one sequence position costs: layers * 2 * heads * head_dim * bytes."""
        return self.num_hidden_layers * 2 * self.num_key_value_heads * self.head_dim * bytes_per_element


@dataclass(frozen=True)
class DeepOcrConfig:
    """Whole-model configuration: decoder, the two vision towers and the projector.

    Attributes:
        decoder: language-model dimensions.
        sam: SAM ViT-B tower configuration.
        clip: CLIP-L tower configuration.
        projector_input_dim: projector input width (CLIP width + SAM compressor channels).
        projector_n_embed: projector output width (= decoder hidden size).
        torch_dtype: dtype the checkpoint was saved in, as spelled in config.json.
        raw: the parsed config.json, kept for writing it back unchanged.
    """

    decoder: DecoderConfig
    sam: SamConfig
    clip: ClipConfig
    projector_input_dim: int
    projector_n_embed: int
    torch_dtype: str = "bfloat16"
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeepOcrConfig:
        """Parse the official config.json layout.

        Raises:
            CheckpointError: a required key is missing, has the wrong type, or describes an
                architecture this package does not implement (MLA, GQA, non-softmax gating).
        """
        from deepocr_cli.model.sam import SamConfig
        from deepocr_cli.model.vision import ClipConfig

        try:
            decoder = _parse_decoder(data)
            widths = data["vision_config"]["width"]
            sam = _parse_tower(SamConfig, widths[SAM_KEY], data)
            clip = _parse_tower(ClipConfig, widths[CLIP_KEY], data)
            projector = data["projector_config"]
            proj_in, proj_out = int(projector["input_dim"]), int(projector["n_embed"])
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"malformed DeepSeek-OCR config.json: missing or invalid {exc!s}") from exc
        if proj_out != decoder.hidden_size:
            raise CheckpointError(
                f"config.json: projector n_embed {proj_out} != decoder hidden_size {decoder.hidden_size}"
            )
        return cls(decoder, sam, clip, proj_in, proj_out, str(data.get("torch_dtype", "bfloat16")), data)

    @classmethod
    def from_file(cls, path: Path) -> DeepOcrConfig:
        """Read and parse a config.json file.

        Raises:
            CheckpointError: the file is unreadable, not JSON, or malformed.
        """
        return cls.from_dict(read_config_json(path))


def _parse_decoder(data: dict[str, Any]) -> DecoderConfig:
    """Decoder fields: language_config first, then top level, then DeepseekV2 defaults."""
    lang = data.get("language_config") or {}
    if not isinstance(lang, dict):
        raise CheckpointError("config.json: language_config must be an object")
    values: dict[str, Any] = {}
    for f in fields(DecoderConfig):
        if f.name in lang and lang[f.name] is not None:
            values[f.name] = lang[f.name]
        elif f.name in data and data[f.name] is not None:
            values[f.name] = data[f.name]
        elif f.name in DECODER_DEFAULTS:
            values[f.name] = DECODER_DEFAULTS[f.name]
        else:
            raise CheckpointError(f"malformed DeepSeek-OCR config.json: missing decoder field {f.name!r}")
    for f in fields(DecoderConfig):
        caster = {"int": int, "float": float, "bool": bool, "str": str}[str(f.type)]
        try:
            values[f.name] = caster(values[f.name])
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"config.json: decoder field {f.name!r} is not {f.type}") from exc
    cfg = DecoderConfig(**values)
    problems = []
    if cfg.use_mla:
        problems.append("use_mla=true (multi-head latent attention) is not supported")
    if cfg.num_key_value_heads != cfg.num_attention_heads:
        problems.append("num_key_value_heads != num_attention_heads (GQA) is not supported")
    if cfg.hidden_size % cfg.num_attention_heads:
        problems.append("hidden_size is not a multiple of num_attention_heads")
    if cfg.scoring_func != "softmax" or cfg.topk_method != "greedy":
        problems.append(f"gating {cfg.scoring_func}/{cfg.topk_method} is not supported (softmax/greedy only)")
    if cfg.hidden_act != "silu":
        problems.append(f"hidden_act {cfg.hidden_act!r} is not supported (silu only)")
    if cfg.num_experts_per_tok > cfg.n_routed_experts:
        problems.append("num_experts_per_tok exceeds n_routed_experts")
    if problems:
        raise CheckpointError("unsupported DeepSeek-OCR config.json: " + "; ".join(problems))
    return cfg


def _parse_tower(cls: type, spec: dict[str, Any], data: dict[str, Any]) -> Any:
    """Build a SamConfig/ClipConfig: keys present in ``spec`` override the official defaults."""
    if not isinstance(spec, dict):
        raise CheckpointError(f"config.json: vision tower entry for {cls.__name__} must be an object")
    defaults = {f.name: getattr(cls(), f.name) for f in fields(cls)}
    values: dict[str, Any] = {}
    for name, default in defaults.items():
        value = spec.get(name, default)
        if isinstance(default, tuple):
            value = tuple(int(v) for v in value)
        elif isinstance(default, bool):
            value = bool(value)
        elif isinstance(default, int):
            value = int(value)
        elif isinstance(default, float):
            value = float(value)
        values[name] = value
    return cls(**values)


def tower_to_dict(tower: Any) -> dict[str, Any]:
    """A SamConfig/ClipConfig as the JSON object config.json stores (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(tower).items()}


def read_config_json(path: Path) -> dict[str, Any]:
    """The JSON object of a config.json file.

    Raises:
        CheckpointError: the file is unreadable, not JSON, or not an object.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read model config {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"model config {path} is not a JSON object")
    return data
