"""DeepSeek-OCR-2 pieces on their own: config layouts, key mapping, mask, queries, geometry, and where we
follow the original code instead of transformers' port (BENCHMARKS "DeepSeek-OCR-2", item 7 of issue 15)."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image, ImageOps

from deepocr_cli.errors import CheckpointError
from deepocr_cli.model.image_processing import prepare_image_ocr2, to_tensor
from deepocr_cli.model.loading import load_checkpoint, read_model_config
from deepocr_cli.model.ocr2_config import NATIVE, ORIGINAL, DeepOcr2Config, is_ocr2_config
from deepocr_cli.model.ocr2_encoder import DeepOcr2Encoder, hybrid_mask
from deepocr_cli.model.ocr2_layout import native_key, original_key
from deepocr_cli.model.ocr2_testing import ocr2_checkpoint_config, write_random_ocr2_checkpoint
from deepocr_cli.model.testing import checkpoint_config
from deepocr_cli.planning.ocr2_geometry import ocr2_embeddings, ocr2_grid, ocr2_render_size


def test_full_original_config_is_the_released_geometry():
    cfg = DeepOcr2Config.from_dict(ocr2_checkpoint_config("full", ORIGINAL))
    assert cfg.layout == ORIGINAL
    # the official file's SAM entry says [512, 1024]; net_3 really feeds the 896-wide encoder
    assert cfg.sam.downsample_channels == (512, 896)
    enc = cfg.encoder
    assert (enc.hidden_size, enc.num_hidden_layers, enc.num_attention_heads, enc.num_key_value_heads) == (
        896,
        24,
        14,
        2,
    )
    assert (enc.intermediate_size, enc.rope_theta, enc.head_dim) == (4864, 1e6, 64)
    assert cfg.decoder.hidden_size == 1280 and cfg.decoder.first_k_dense_replace == 1


def test_full_native_config_parses_to_the_same_network():
    original = DeepOcr2Config.from_dict(ocr2_checkpoint_config("full", ORIGINAL))
    native = DeepOcr2Config.from_dict(ocr2_checkpoint_config("full", NATIVE))
    assert native.layout == NATIVE
    assert (native.decoder, native.sam, native.encoder) == (original.decoder, original.sam, original.encoder)


def test_family_detection_and_v1_untouched(tmp_path):
    assert is_ocr2_config(ocr2_checkpoint_config("tiny", ORIGINAL))
    assert is_ocr2_config(ocr2_checkpoint_config("tiny", NATIVE))
    assert not is_ocr2_config(checkpoint_config("tiny"))
    (tmp_path / "config.json").write_text(json.dumps(checkpoint_config("tiny")))
    assert not isinstance(read_model_config(tmp_path / "config.json"), DeepOcr2Config)


def test_bad_native_config_is_one_clear_error():
    data = ocr2_checkpoint_config("tiny", NATIVE)
    data["text_config"]["mlp_layer_types"] = ["sparse", "dense"]
    with pytest.raises(CheckpointError, match="dense layers after"):
        DeepOcr2Config.from_dict(data)


@pytest.mark.parametrize(
    ("original", "native"),
    [
        (
            "model.sam_model.blocks.3.norm1.weight",
            "model.vision_tower.sam_encoder.layers.3.layer_norm1.weight",
        ),
        ("model.sam_model.blocks.0.attn.rel_pos_h", "model.vision_tower.sam_encoder.layers.0.attn.rel_pos_h"),
        (
            "model.sam_model.patch_embed.proj.bias",
            "model.vision_tower.sam_encoder.patch_embed.projection.bias",
        ),
        ("model.sam_model.neck.3.weight", "model.vision_tower.sam_encoder.neck.layer_norm2.weight"),
        ("model.sam_model.net_3.weight", "model.vision_tower.sam_encoder.proj.conv2.weight"),
        (
            "model.qwen2_model.model.model.layers.5.self_attn.q_proj.bias",
            "model.vision_tower.vision_encoder.layers.5.self_attn.q_proj.bias",
        ),
        ("model.qwen2_model.model.model.norm.weight", "model.vision_tower.vision_encoder.norm.weight"),
        ("model.qwen2_model.query_768.weight", "model.vision_tower.query_768_resolution.weight"),
        ("model.projector.layers.weight", "model.multi_modal_projector.weight"),
        ("model.view_seperator", "model.view_separator"),
        (
            "model.layers.1.mlp.shared_experts.up_proj.weight",
            "model.language_model.layers.1.mlp.shared_experts.up_proj.weight",
        ),
        ("model.norm.weight", "model.language_model.norm.weight"),
        ("lm_head.weight", "lm_head.weight"),
    ],
)
def test_key_names_map_both_ways(original, native):
    assert native_key(original).key == native
    assert original_key(native) == original


def test_fused_expert_slices():
    gate = native_key("model.layers.4.mlp.experts.7.gate_proj.weight")
    up = native_key("model.layers.4.mlp.experts.7.up_proj.weight")
    down = native_key("model.layers.4.mlp.experts.7.down_proj.weight")
    assert (gate.key, gate.expert, gate.half) == (
        "model.language_model.layers.4.mlp.experts.gate_up_proj",
        7,
        0,
    )
    assert (up.expert, up.half) == (7, 1)
    assert (down.key, down.expert, down.half) == (
        "model.language_model.layers.4.mlp.experts.down_proj",
        7,
        None,
    )


def test_native_config_with_original_keys_loads(tmp_path):
    """transformers' save_pretrained default: native config.json, original key names (facts §8.6)."""
    folder = write_random_ocr2_checkpoint(tmp_path / "mixed", layout=ORIGINAL, seed=5)
    (folder / "config.json").write_text(json.dumps(ocr2_checkpoint_config("tiny", NATIVE)))
    ref = write_random_ocr2_checkpoint(tmp_path / "ref", layout=NATIVE, seed=5)
    a = load_checkpoint(folder, device="cpu").model.state_dict()
    b = load_checkpoint(ref, device="cpu").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_missing_tensor_is_named(tmp_path):
    from safetensors.torch import load_file, save_file

    folder = write_random_ocr2_checkpoint(tmp_path / "n", layout=NATIVE)
    tensors = load_file(folder / "model.safetensors")
    del tensors["model.vision_tower.query_1024_resolution.weight"]
    save_file(tensors, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="query_1024_resolution"):
        load_checkpoint(folder, device="cpu")


def test_hybrid_mask():
    mask = hybrid_mask(3)
    expected = torch.tensor(
        [
            [1, 1, 1, 0, 0, 0],
            [1, 1, 1, 0, 0, 0],
            [1, 1, 1, 0, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 1, 0],
            [1, 1, 1, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(mask, expected)


def test_query_table_by_view_and_unknown_size_rejected():
    """Original: exactly 144 -> query_768, 256 -> query_1024, anything else fails. transformers' port
    silently takes query_768 for any count <= 144; we follow the original and raise."""
    enc = DeepOcr2Encoder(DeepOcr2Config.from_dict(ocr2_checkpoint_config("tiny")).encoder)
    assert enc.queries_for(144) is enc.query_768.weight
    assert enc.queries_for(256) is enc.query_1024.weight
    with pytest.raises(ValueError, match="144 or 256"):
        enc.queries_for(100)


def test_global_view_padding_follows_the_original_not_transformers():
    """1002x1400: the resized view is 733 wide, padding 291 (3 mod 4). ImageOps.pad (original) puts the
    image at x = round(145.5) = 146; transformers' port at 291 // 2 = 145. We match the original."""
    page = Image.new("RGB", (1002, 1400), "white")
    page.paste((10, 200, 30), (0, 0, 40, 1400))  # a coloured left edge shows where the paste landed
    ours = prepare_image_ocr2(page).global_view
    official = to_tensor(ImageOps.pad(page, (1024, 1024), color=(127, 127, 127)))
    assert torch.equal(ours, official)
    pad_value = ours[0, 0, 0].item()
    assert ours[0, 512, 145].item() == pad_value and ours[0, 512, 146].item() != pad_value
    transformers = pytest.importorskip("transformers")
    processor = transformers.DeepseekOcr2ImageProcessorPil()
    theirs = processor(images=page, return_tensors="pt")["pixel_values"][0]
    assert theirs[0, 512, 145].item() != pad_value  # one pixel to the left
    assert torch.equal(theirs[:, :, 145 : 145 + 733], ours[:, :, 146 : 146 + 733])


@pytest.mark.parametrize(
    ("size", "grid"),
    [
        ((768, 768), (1, 1)),
        ((769, 500), (3, 2)),
        ((1536, 768), (2, 1)),
        ((1000, 1500), (2, 3)),
        ((2048, 683), (3, 1)),
        ((900, 5000), (1, 6)),
    ],
)
def test_grid_and_placeholders(size, grid):
    assert ocr2_grid(*size) == grid
    k = grid[0] * grid[1]
    assert ocr2_embeddings(grid) == 256 + (144 * k if k > 1 else 0) + 1


def test_tile_cap_is_the_budget():
    assert ocr2_grid(1000, 1500, max_tiles=0) == (1, 1)
    assert ocr2_grid(1000, 1500, max_tiles=3)[0] * ocr2_grid(1000, 1500, max_tiles=3)[1] <= 3
    assert ocr2_embeddings(ocr2_grid(1000, 1500, max_tiles=0)) == 257
    prepared = prepare_image_ocr2(Image.new("RGB", (1000, 1500), "white"), max_tiles=0)
    assert prepared.tiles is None and prepared.num_embeddings == 257


def test_render_size_covers_the_tiles():
    w, h = ocr2_render_size(612, 792)  # US letter in points
    grid = ocr2_grid(w, h)
    assert w >= 768 * grid[0] and h >= 768 * grid[1] and max(w, h) >= 1024
    assert max(ocr2_render_size(612, 792, max_tiles=0)) == 1024
