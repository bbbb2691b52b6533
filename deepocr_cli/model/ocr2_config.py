"""DeepSeek-OCR-2 configuration, parsed from either checkpoint layout (facts §8.3, §8.4).

Two ``config.json`` shapes describe the same network:

* **original** (``deepseek-ai/DeepSeek-OCR-2``): ``model_type "deepseek_vl_v2"``, the decoder under
  ``language_config`` as in v1, ``vision_config.model_name "deepencoderv2"``. The official file is
  stale in two places the official code ignores: the SAM entry says ``downsample_channels
  [512, 1024]`` although ``net_3`` has 896 outputs (= the encoder width), and the Qwen2 encoder entry
  holds only ``{"dim": 896}``; the other encoder sizes are constants of the official code. Extra
  keys in that entry (``layers``, ``heads``, ...) override those constants (our tiny test checkpoints).
* **native** (transformers' ``deepseek_ocr2``, ``deepseek-community/DeepSeek-OCR-2``):
  ``text_config`` / ``vision_config.{sam_config, encoder_config}``, ``mlp_layer_types`` instead of
  ``first_k_dense_replace``, RoPE base under ``rope_parameters``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields, replace
from typing import Any

from deepocr_cli.errors import CheckpointError
from deepocr_cli.model.configuration import DecoderConfig, _parse_decoder, _parse_tower
from deepocr_cli.model.sam import SamConfig
from deepocr_cli.planning.families import config_is_ocr2

log = logging.getLogger(__name__)

ORIGINAL = "original"
NATIVE = "native"
#: Key of the Qwen2 encoder entry in the original ``vision_config.width``.
QWEN2_KEY = "qwen2-0-5b"
#: Queries per view: 12x12 for a 768 tile, 16x16 for the 1024 global view (fixed table sizes).
QUERIES_768 = 144
QUERIES_1024 = 256


@dataclass(frozen=True)
class Ocr2EncoderConfig:
    """The Qwen2-0.5B-style encoder of DeepEncoder V2; defaults are the released model (facts §8.1)."""

    hidden_size: int = 896
    num_hidden_layers: int = 24
    num_attention_heads: int = 14
    num_key_value_heads: int = 2
    intermediate_size: int = 4864
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0

    @property
    def head_dim(self) -> int:
        """Per-head width (64 for the released model)."""
        return self.hidden_size // self.num_attention_heads


#: Original-layout spellings of the encoder fields (the official file has only ``dim``).
_ORIGINAL_ENCODER_NAMES = {
    "dim": "hidden_size",
    "layers": "num_hidden_layers",
    "heads": "num_attention_heads",
    "kv_heads": "num_key_value_heads",
    "intermediate_size": "intermediate_size",
    "rms_norm_eps": "rms_norm_eps",
    "rope_theta": "rope_theta",
}


@dataclass(frozen=True)
class DeepOcr2Config:
    """Whole DeepSeek-OCR-2 configuration.

    Attributes:
        decoder: the DeepSeek-MoE decoder (same architecture as v1).
        sam: SAM tower; its last compressor conv outputs ``encoder.hidden_size`` channels.
        encoder: the Qwen2-style encoder.
        projector_n_embed: projector output width (= decoder hidden size).
        layout: ``"original"`` or ``"native"``: which key names the checkpoint uses.
        image_token_id: id of ``<image>`` the config declares (the tokenizer's is used at run time).
        torch_dtype: dtype the checkpoint was saved in.
        raw: the parsed config.json.
    """

    decoder: DecoderConfig
    sam: SamConfig
    encoder: Ocr2EncoderConfig
    projector_n_embed: int
    layout: str = ORIGINAL
    image_token_id: int = 128815
    torch_dtype: str = "bfloat16"
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    family = "ocr2"

    @property
    def projector_input_dim(self) -> int:
        """The projector reads the encoder's query outputs."""
        return self.encoder.hidden_size

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeepOcr2Config:
        """Parse either layout (see the module docstring).

        Raises:
            CheckpointError: a required key is missing or describes an unsupported architecture.
        """
        try:
            cfg = _parse_native(data) if data.get("model_type") == "deepseek_ocr2" else _parse_original(data)
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"malformed DeepSeek-OCR-2 config.json: missing or invalid {exc!s}"
            ) from exc
        enc = cfg.encoder
        if enc.hidden_size % enc.num_attention_heads or enc.num_attention_heads % enc.num_key_value_heads:
            raise CheckpointError("config.json: encoder heads do not divide its width / its KV heads")
        if cfg.projector_n_embed != cfg.decoder.hidden_size:
            raise CheckpointError(
                f"config.json: projector output {cfg.projector_n_embed} != decoder hidden_size "
                f"{cfg.decoder.hidden_size}"
            )
        return cfg


def is_ocr2_config(data: dict[str, Any]) -> bool:
    """Whether a parsed config.json describes DeepSeek-OCR-2 (either layout)."""
    return config_is_ocr2(data)


def _parse_original(data: dict[str, Any]) -> DeepOcr2Config:
    decoder = _parse_decoder(data)
    widths = data["vision_config"]["width"]
    enc_spec = widths.get(QWEN2_KEY, {}) or {}
    values = {}
    for name, target in _ORIGINAL_ENCODER_NAMES.items():
        if name in enc_spec:
            values[target] = type(getattr(Ocr2EncoderConfig(), target))(enc_spec[name])
    encoder = Ocr2EncoderConfig(**values)
    proj_in = int(data["projector_config"]["input_dim"])
    if proj_in != encoder.hidden_size:
        raise CheckpointError(
            f"config.json: projector input_dim {proj_in} != encoder width {encoder.hidden_size}"
        )
    sam = _parse_tower(SamConfig, widths["sam_vit_b"], data)
    sam = _with_last_conv(sam, encoder.hidden_size)
    return DeepOcr2Config(
        decoder=decoder,
        sam=sam,
        encoder=encoder,
        projector_n_embed=int(data["projector_config"]["n_embed"]),
        layout=ORIGINAL,
        torch_dtype=str(data.get("torch_dtype", "bfloat16")),
        raw=data,
    )


def _with_last_conv(sam: SamConfig, width: int) -> SamConfig:
    """SAM whose last compressor conv feeds the encoder (the official config's 1024 is stale)."""
    channels = tuple(sam.downsample_channels)
    if channels[-1] != width:
        log.debug("SAM downsample_channels %s: last conv set to the encoder width %d", channels, width)
        channels = (*channels[:-1], width)
    return replace(sam, downsample_channels=channels)


def _rope_theta(spec: dict[str, Any], default: float) -> float:
    params = spec.get("rope_parameters") or {}
    return float(params.get("rope_theta", spec.get("rope_theta", default)))


def _parse_native(data: dict[str, Any]) -> DeepOcr2Config:
    text = dict(data.get("text_config") or {})
    kinds = list(text.get("mlp_layer_types") or [])
    layers = int(text.get("num_hidden_layers", 12))
    if kinds:
        if len(kinds) != layers or any(k not in ("dense", "sparse") for k in kinds):
            raise CheckpointError(f"config.json: mlp_layer_types {kinds} does not describe {layers} layers")
        dense = kinds.index("sparse") if "sparse" in kinds else layers
        if any(k != "sparse" for k in kinds[dense:]):
            raise CheckpointError("config.json: dense layers after the first sparse one are not supported")
        text["first_k_dense_replace"] = dense
    text["rope_theta"] = _rope_theta(text, 10000.0)
    text.setdefault("bos_token_id", 0)
    text.setdefault("eos_token_id", 1)
    text["norm_topk_prob"] = False  # the native port never renormalises (facts §8.4)
    decoder = _parse_decoder({"language_config": text})
    vision = data.get("vision_config") or {}
    sam_spec = vision.get("sam_config") or {}
    enc_spec = vision.get("encoder_config") or {}
    sam_fields = {
        "width": sam_spec.get("hidden_size"),
        "layers": sam_spec.get("num_hidden_layers"),
        "heads": sam_spec.get("num_attention_heads"),
        "patch_size": sam_spec.get("patch_size"),
        "image_size": sam_spec.get("image_size"),
        "window_size": sam_spec.get("window_size"),
        "global_attn_indexes": sam_spec.get("global_attn_indexes"),
        "mlp_dim": sam_spec.get("mlp_dim"),
        "out_chans": sam_spec.get("output_channels"),
        "downsample_channels": sam_spec.get("downsample_channels") or [512, 896],
        "layer_norm_eps": sam_spec.get("layer_norm_eps"),
    }
    sam = _parse_tower(SamConfig, {k: v for k, v in sam_fields.items() if v is not None}, data)
    if sam_spec.get("mlp_dim") is None and "hidden_size" in sam_spec:
        sam = replace(sam, mlp_dim=int(sam.width * float(sam_spec.get("mlp_ratio", 4.0))))
    defaults = Ocr2EncoderConfig()
    enc_values: dict[str, Any] = {}
    for f in fields(Ocr2EncoderConfig):
        if f.name == "rope_theta":
            enc_values[f.name] = _rope_theta(enc_spec, defaults.rope_theta)
        elif enc_spec.get(f.name) is not None:
            enc_values[f.name] = type(getattr(defaults, f.name))(enc_spec[f.name])
    encoder = Ocr2EncoderConfig(**enc_values)
    if sam.downsample_channels[-1] != encoder.hidden_size:
        raise CheckpointError(
            f"config.json: SAM downsample_channels end at {sam.downsample_channels[-1]}, "
            f"the encoder is {encoder.hidden_size} wide"
        )
    return DeepOcr2Config(
        decoder=decoder,
        sam=sam,
        encoder=encoder,
        projector_n_embed=decoder.hidden_size,
        layout=NATIVE,
        image_token_id=int(data.get("image_token_id", 128815)),
        torch_dtype=str(data.get("torch_dtype") or data.get("dtype") or text.get("dtype") or "bfloat16"),
        raw=data,
    )
