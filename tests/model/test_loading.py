"""Checkpoint loading: round trip, tensor mismatches, offline hub, tokenizer and special ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from deepocr_cli.errors import CheckpointError, ModelError
from deepocr_cli.model import load_engine, write_random_checkpoint
from deepocr_cli.model.loading import load_checkpoint, load_tokenizer, special_ids
from deepocr_cli.model.testing import write_safetensors_stream


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_random_checkpoint(tmp_path_factory.mktemp("tiny"), size="tiny", seed=0)


def _rewrite_weights(src: Path, dst: Path, edit) -> Path:
    """Copy a checkpoint folder, passing its tensors through ``edit(dict) -> dict``."""
    from safetensors.torch import load_file

    dst.mkdir()
    for f in src.iterdir():
        if f.suffix != ".safetensors":
            (dst / f.name).write_bytes(f.read_bytes())
    tensors = edit(load_file(str(src / "model.safetensors")))
    shapes = {k: (v.dtype, tuple(v.shape)) for k, v in tensors.items()}
    write_safetensors_stream(dst / "model.safetensors", tensors.items(), shapes)
    return dst


def test_tiny_checkpoint_round_trips_through_load_engine(tiny):
    from safetensors.torch import load_file

    engine = load_engine(str(tiny), device="cpu")
    assert engine.device.type == "cpu" and engine.dtype == torch.float32
    stored = load_file(str(tiny / "model.safetensors"))
    state = engine.model.state_dict()
    assert stored.keys() == state.keys()
    assert all(torch.equal(stored[k], state[k]) for k in stored)
    assert engine.model_id == str(tiny)


def test_dtype_override_casts_floating_weights(tiny):
    ckpt = load_checkpoint(str(tiny), device="cpu", dtype="bf16")
    assert ckpt.model.lm_head.weight.dtype == torch.bfloat16
    assert ckpt.model.model.layers[1].mlp.experts[3].up_proj.weight.dtype == torch.bfloat16


def test_mismatched_tensors_are_all_named_in_one_error(tiny, tmp_path):
    def edit(t):
        t.pop("model.layers.1.mlp.experts.3.up_proj.weight")
        t["model.extra.weight"] = torch.zeros(2)
        t["model.norm.weight"] = torch.ones(7)
        t["model.vision_model.embeddings.position_ids"] = torch.arange(3)  # ignored (re-saves have it)
        return t

    bad = _rewrite_weights(tiny, tmp_path / "bad", edit)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(str(bad), device="cpu")
    msg = str(info.value)
    assert "missing: model.layers.1.mlp.experts.3.up_proj.weight" in msg
    assert "unexpected: model.extra.weight" in msg
    assert "mis-shaped: model.norm.weight (checkpoint [7], model [64])" in msg
    assert "position_ids" not in msg


def test_sharded_checkpoint_loads_through_the_index(tiny, tmp_path):
    from safetensors.torch import load_file

    dst = tmp_path / "sharded"
    dst.mkdir()
    for f in tiny.iterdir():
        if f.suffix != ".safetensors":
            (dst / f.name).write_bytes(f.read_bytes())
    tensors = load_file(str(tiny / "model.safetensors"))
    names = list(tensors)
    weight_map = {}
    for i, part in enumerate((names[::2], names[1::2])):
        fname = f"model-0000{i + 1}-of-00002.safetensors"
        write_safetensors_stream(
            dst / fname,
            ((k, tensors[k]) for k in part),
            {k: (tensors[k].dtype, tuple(tensors[k].shape)) for k in part},
        )
        weight_map.update({k: fname for k in part})
    (dst / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    ckpt = load_checkpoint(str(dst), device="cpu")
    assert torch.equal(ckpt.model.lm_head.weight, tensors["lm_head.weight"])


def test_hub_id_offline_with_empty_cache_raises_model_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf" / "hub"), raising=False)
    with pytest.raises(ModelError) as info:
        load_engine("deepseek-ai/DeepSeek-OCR", device="cpu")
    assert "HF_HUB_OFFLINE" in str(info.value) and "local folder" in str(info.value)
    assert not isinstance(info.value, CheckpointError)


def test_missing_local_folder_raises_model_error(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_engine(str(tmp_path / "nope" / "deeper" / "x"), device="cpu")


def test_special_ids_come_from_the_tokenizer(tiny):
    tok = load_tokenizer(tiny)
    assert len(tok) == 128_827
    ids = special_ids(tok)
    assert (ids.bos, ids.eos, ids.pad, ids.image, ids.td_open, ids.td_close) == (
        0,
        1,
        2,
        128815,
        128821,
        128822,
    )
    assert tok.convert_tokens_to_ids("<|grounding|>") == 128820
    text = "\n<|grounding|>Convert the document to markdown."
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_malformed_config_file_raises_checkpoint_error(tiny, tmp_path):
    dst = tmp_path / "badcfg"
    dst.mkdir()
    for f in tiny.iterdir():
        (dst / f.name).symlink_to(f)
    (dst / "config.json").unlink()
    (dst / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config"):
        load_checkpoint(str(dst), device="cpu")
