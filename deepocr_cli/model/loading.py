"""Load a DeepSeek-OCR checkpoint (local folder or hub id) tensor by tensor onto the target device."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepocr_cli.checkpoints import ALLOW_PATTERNS as _ALLOW_PATTERNS
from deepocr_cli.checkpoints import weight_files as _safetensors_files
from deepocr_cli.errors import CheckpointError, ModelError
from deepocr_cli.model.configuration import DeepOcrConfig, read_config_json
from deepocr_cli.model.ocr2_config import DeepOcr2Config, is_ocr2_config
from deepocr_cli.model.ocr2_layout import TensorSource, sources_for
from deepocr_cli.planning.families import OCR2, V1, ModelFamily

log = logging.getLogger(__name__)

DEFAULT_MODEL = "deepseek-ai/DeepSeek-OCR"
#: Checkpoint tensors that are fine to ignore (a buffer some re-saves include, facts §2).
_IGNORED_SUFFIXES = ("position_ids",)
#: Special-token names the engine needs, looked up from the tokenizer.
SPECIAL_TOKENS = {
    "image": "<image>",
    "td_open": "<td>",
    "td_close": "</td>",
}


@dataclass(frozen=True)
class SpecialIds:
    """Token ids the engine needs; read from the tokenizer, never hard-coded."""

    bos: int
    eos: int
    pad: int
    image: int
    td_open: int
    td_close: int


@dataclass
class LoadedCheckpoint:
    """A model ready for inference plus what came with it.

    Attributes:
        model: the network (eval mode, on ``device`` in ``dtype``).
        tokenizer: the fast tokenizer from the same folder.
        config: parsed configuration.
        special: special-token ids.
        path: local folder the files came from.
        device: device of the weights.
        dtype: compute dtype.
    """

    model: Any
    tokenizer: Any
    config: DeepOcrConfig | DeepOcr2Config
    special: SpecialIds
    path: Path
    device: torch.device
    dtype: torch.dtype


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; anything else is passed to torch.device.

    Raises:
        ModelError: CUDA/MPS was requested but is not available.
    """
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {dev} requested but CUDA is not available; use --device cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ModelError("device mps requested but MPS is not available; use --device cpu")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """Default bf16 on CUDA, fp32 elsewhere; strings like "bf16", "float16", "fp32" are accepted."""
    if dtype is None or dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {
        "bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
        "half": torch.float16, "fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
    }  # fmt: skip
    try:
        return names[str(dtype).lower()]
    except KeyError as exc:
        raise ModelError(f"unknown dtype {dtype!r}; use bf16, fp16 or fp32") from exc


def resolve_model_dir(model: str | Path, revision: str | None = None) -> Path:
    """A local folder as is, else a hub snapshot (honours HF_HOME, HF_HUB_OFFLINE and ``revision``).

    Raises:
        ModelError: the folder does not exist and the hub cannot provide it.
    """
    local = Path(model).expanduser()
    if local.is_dir():
        return local
    if local.exists() or str(model).startswith((".", "/", "~")) or str(model).count("/") != 1:
        raise ModelError(
            f"model folder {model} not found (expected a folder with config.json and *.safetensors)"
        )
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=str(model), revision=revision, allow_patterns=_ALLOW_PATTERNS))
    except Exception as exc:  # offline, missing repo, network: all mean "no weights here"
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        hint = (
            "HF_HUB_OFFLINE is set and the model is not in the local cache: unset HF_HUB_OFFLINE to download "
            "it, or pass a local folder"
            if offline
            else "check the model id and your network, or pass a local folder"
        )
        raise ModelError(
            f"cannot get model {model!r}{f' at revision {revision}' if revision else ''}: {exc.__class__.__name__}. "
            f"{hint} (--model /path/to/DeepSeek-OCR, a folder with config.json, tokenizer files and "
            "*.safetensors)."
        ) from exc


def load_tokenizer(path: str | Path) -> Any:
    """The fast tokenizer stored in ``path`` (tokenizer.json is used verbatim; no remote code).

    Raises:
        CheckpointError: the tokenizer files are missing or unreadable.
    """
    from transformers import PreTrainedTokenizerFast
    from transformers.utils import logging as hf_logging

    folder = Path(path)
    if not (folder / "tokenizer.json").is_file():
        raise CheckpointError(f"{folder} has no tokenizer.json")
    # The official tokenizer_config.json names LlamaTokenizerFast; loading its tokenizer.json with the generic fast
    # class is deliberate, and older transformers (4.5x) warn about it on every load, which -q must not show.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return PreTrainedTokenizerFast.from_pretrained(str(folder))
    except Exception as exc:
        raise CheckpointError(f"cannot load the tokenizer in {folder}: {exc}") from exc
    finally:
        hf_logging.set_verbosity(verbosity)


def special_ids(tokenizer: Any) -> SpecialIds:
    """Look up BOS/EOS/pad/`<image>`/`<td>`/`</td>` ids in the tokenizer.

    Raises:
        CheckpointError: a required token is unknown to the tokenizer.
    """
    values: dict[str, int | None] = {
        "bos": tokenizer.bos_token_id,
        "eos": tokenizer.eos_token_id,
        "pad": tokenizer.pad_token_id,
    }
    unk = tokenizer.unk_token_id
    for key, token in SPECIAL_TOKENS.items():
        tid = tokenizer.convert_tokens_to_ids(token)
        values[key] = None if tid is None or tid == unk else int(tid)
    if values["pad"] is None:
        values["pad"] = values["eos"]
    missing = [k for k, v in values.items() if v is None]
    if missing:
        raise CheckpointError(f"tokenizer lacks required special tokens: {', '.join(missing)}")
    return SpecialIds(**values)  # type: ignore[arg-type]


def _source_shape(shape: tuple[int, ...], src: TensorSource) -> tuple[int, ...]:
    """Shape of the part of a stored tensor that ``src`` selects."""
    if src.expert is None:
        return shape
    inner = shape[1:]
    if src.half is not None:
        inner = (inner[0] // 2, *inner[1:])
    return tuple(inner)


def _read(handle: Any, src: TensorSource) -> torch.Tensor:
    """The tensor (or the expert slice of a fused tensor) ``src`` names, read lazily."""
    if src.expert is None:
        return handle.get_tensor(src.key)
    part = handle.get_slice(src.key)
    if src.half is None:
        return part[src.expert]
    rows = part.get_shape()[1] // 2
    return part[src.expert, src.half * rows : (src.half + 1) * rows]


def _set_tensor(model: nn.Module, name: str, tensor: torch.Tensor) -> None:
    """Replace parameter/buffer ``name`` (possibly on meta) with ``tensor``."""
    module_name, _, attr = name.rpartition(".")
    module = model.get_submodule(module_name) if module_name else model
    if attr in module._parameters:
        module._parameters[attr] = nn.Parameter(tensor, requires_grad=False)
    else:
        module._buffers[attr] = tensor


def load_state_streaming(
    model: nn.Module,
    folder: Path,
    device: torch.device,
    dtype: torch.dtype,
    key_map: Callable[[list[str], list[str]], dict[str, TensorSource]] | None = None,
) -> None:
    """Fill a meta-device model from safetensors files, one tensor at a time.

    Each tensor is read (memory-mapped), cast and moved, then dropped, so host memory never holds
    more than about one tensor. Floating tensors are cast to ``dtype``; others keep their dtype.

    Args:
        model: the network on the meta device.
        folder: checkpoint folder.
        device: target device.
        dtype: floating dtype.
        key_map: (model keys, checkpoint keys) -> where each model tensor is stored, for layouts
            whose names differ from the model's (DeepSeek-OCR-2 native); None: same names.

    Raises:
        CheckpointError: naming every missing, unexpected and mis-shaped tensor.
    """
    from safetensors import safe_open

    files = _safetensors_files(folder)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    handles = []
    found: dict[str, int] = {}
    try:
        for i, f in enumerate(files):
            h = safe_open(str(f), framework="pt", device="cpu")
            handles.append(h)
            for key in h.keys():  # noqa: SIM118 - safe_open handles are not iterable
                found.setdefault(key, i)
    except Exception as exc:
        raise CheckpointError(f"cannot read safetensors in {folder}: {exc}") from exc
    sources = key_map(list(expected), list(found)) if key_map else {k: TensorSource(k) for k in expected}
    used = {s.key for s in sources.values()}
    unexpected = sorted(k for k in found if k not in used and not k.endswith(_IGNORED_SUFFIXES))
    missing = sorted({s.key if s.key == k else f"{s.key} (for {k})" for k, s in sources.items() if s.key not in found})
    mis_shaped = []
    for key, shape in expected.items():
        src = sources[key]
        if src.key in found:
            got = _source_shape(tuple(handles[found[src.key]].get_slice(src.key).get_shape()), src)
            if got != shape:
                stored = "" if src.key == key else f"{src.key} "
                mis_shaped.append(f"{key} (checkpoint {stored}{list(got)}, model {list(shape)})")
    if missing or unexpected or mis_shaped:
        parts = []
        for label, names in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", mis_shaped)):
            if names:
                shown = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
                parts.append(f"{label}: {shown}")
        raise CheckpointError(f"checkpoint {folder} does not match DeepSeek-OCR: " + "; ".join(parts))
    for key in expected:
        t = _read(handles[found[sources[key].key]], sources[key])  # memory-mapped, no copy yet
        # One conversion on the target device: no full-precision host copy of the tensor.
        t = t.to(device=device, dtype=dtype) if t.is_floating_point() else t.to(device)
        _set_tensor(model, key, t)
        del t
    leftover = [n for n, b in model.named_buffers() if b.is_meta]
    if leftover:
        raise CheckpointError(f"model buffers not initialised by the checkpoint: {', '.join(leftover)}")


def family_of_config(config: DeepOcrConfig | DeepOcr2Config) -> ModelFamily:
    """The geometry family of a parsed configuration."""
    return OCR2 if isinstance(config, DeepOcr2Config) else V1


def read_model_config(path: Path) -> DeepOcrConfig | DeepOcr2Config:
    """Parse a config.json of DeepSeek-OCR (v1) or DeepSeek-OCR-2 (either layout), told apart by its content.

    Raises:
        CheckpointError: unreadable, not JSON, or malformed.
    """
    data = read_config_json(path)
    return DeepOcr2Config.from_dict(data) if is_ocr2_config(data) else DeepOcrConfig.from_dict(data)


def load_checkpoint(
    model: str | Path = DEFAULT_MODEL,
    revision: str | None = None,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype | None = None,
    attn: str = "auto",
) -> LoadedCheckpoint:
    """Load config, tokenizer and weights of a DeepSeek-OCR checkpoint.

    Args:
        model: a local folder or a hub id: DeepSeek-OCR, or DeepSeek-OCR-2 in its original or native layout.
        revision: hub revision (branch, tag or commit); ignored for folders.
        device: "auto" (cuda > mps > cpu) or a torch device string.
        dtype: compute dtype; default bf16 on CUDA, fp32 elsewhere.
        attn: attention backend; "auto" and "sdpa" use torch SDPA (the only one implemented).

    Returns:
        The loaded model and its companions.

    Raises:
        ModelError: the weights cannot be found (offline, missing folder) or the device is unavailable.
        CheckpointError: config, tokenizer or tensors do not match the architecture.
    """
    from deepocr_cli.model.modeling import DeepOcrForCausalLM

    if attn not in ("auto", "sdpa", "eager"):
        raise ModelError(f"attention backend {attn!r} is not available; use auto or sdpa")
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    folder = resolve_model_dir(model, revision)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{folder} has no config.json")
    cfg = read_model_config(config_path)
    tokenizer = load_tokenizer(folder)
    special = special_ids(tokenizer)
    if isinstance(cfg, DeepOcr2Config):
        from deepocr_cli.model.ocr2_modeling import DeepOcr2ForCausalLM

        with torch.device("meta"):
            net = DeepOcr2ForCausalLM(cfg)
        load_state_streaming(net, folder, dev, dt, key_map=sources_for)
    else:
        with torch.device("meta"):
            net = DeepOcrForCausalLM(cfg)
        load_state_streaming(net, folder, dev, dt)
    net.prepare_for_inference()
    log.info("loaded %s on %s (%s)", folder, dev, dt)
    return LoadedCheckpoint(net, tokenizer, cfg, special, folder, dev, dt)
