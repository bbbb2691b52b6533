"""Tests for deepocr_cli.model.vision: checkpoint names/shapes, attention maths, batching and embedding layout."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deepocr_cli.model import vision
from deepocr_cli.model.image_processing import PreparedImage
from deepocr_cli.model.sam import (
    DeepOcrSamEncoder,
    LayerNorm2d,
    SamConfig,
    decomposed_rel_pos_bias,
    resize_abs_pos,
    resize_rel_pos,
    window_partition,
    window_unpartition,
)
from deepocr_cli.model.vision import (
    ClipConfig,
    DeepOcrClipEncoder,
    DeepOcrProjector,
    embed_images,
    encode_views,
)
from deepocr_cli.planning.modes import Mode, image_embeddings

# --- full-size checkpoint layout (facts §2.1-2.3), built on the meta device -----------------------------


def _expected_sam_shapes() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {
        "pos_embed": (1, 64, 64, 768),
        "patch_embed.proj.weight": (768, 3, 16, 16),
        "patch_embed.proj.bias": (768,),
        "neck.0.weight": (256, 768, 1, 1),
        "neck.1.weight": (256,),
        "neck.1.bias": (256,),
        "neck.2.weight": (256, 256, 3, 3),
        "neck.3.weight": (256,),
        "neck.3.bias": (256,),
        "net_2.weight": (512, 256, 3, 3),
        "net_3.weight": (1024, 512, 3, 3),
    }
    for i in range(12):
        p = f"blocks.{i}."
        table = (127, 64) if i in (2, 5, 8, 11) else (27, 64)
        shapes |= {
            p + "norm1.weight": (768,),
            p + "norm1.bias": (768,),
            p + "norm2.weight": (768,),
            p + "norm2.bias": (768,),
            p + "attn.qkv.weight": (2304, 768),
            p + "attn.qkv.bias": (2304,),
            p + "attn.proj.weight": (768, 768),
            p + "attn.proj.bias": (768,),
            p + "attn.rel_pos_h": table,
            p + "attn.rel_pos_w": table,
            p + "mlp.lin1.weight": (3072, 768),
            p + "mlp.lin1.bias": (3072,),
            p + "mlp.lin2.weight": (768, 3072),
            p + "mlp.lin2.bias": (768,),
        }
    return shapes


def _expected_clip_shapes() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {
        "embeddings.class_embedding": (1024,),
        "embeddings.patch_embedding.weight": (1024, 3, 14, 14),
        "embeddings.position_embedding.weight": (257, 1024),
        "pre_layrnorm.weight": (1024,),
        "pre_layrnorm.bias": (1024,),
    }
    for j in range(24):
        p = f"transformer.layers.{j}."
        shapes |= {
            p + "layer_norm1.weight": (1024,),
            p + "layer_norm1.bias": (1024,),
            p + "layer_norm2.weight": (1024,),
            p + "layer_norm2.bias": (1024,),
            p + "self_attn.qkv_proj.weight": (3072, 1024),
            p + "self_attn.qkv_proj.bias": (3072,),
            p + "self_attn.out_proj.weight": (1024, 1024),
            p + "self_attn.out_proj.bias": (1024,),
            p + "mlp.fc1.weight": (4096, 1024),
            p + "mlp.fc1.bias": (4096,),
            p + "mlp.fc2.weight": (1024, 4096),
            p + "mlp.fc2.bias": (1024,),
        }
    return shapes


def _shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _millions(module: torch.nn.Module) -> float:
    return round(sum(p.numel() for p in module.parameters()) / 1e6, 2)


def test_full_size_modules_match_checkpoint_keys_shapes_and_counts() -> None:
    with torch.device("meta"):
        sam, clip, projector = DeepOcrSamEncoder(), DeepOcrClipEncoder(), DeepOcrProjector(2048, 1280)
    assert _shapes(sam) == _expected_sam_shapes()
    assert _shapes(clip) == _expected_clip_shapes()
    assert _shapes(projector) == {"layers.weight": (1280, 2048), "layers.bias": (1280,)}
    assert len(sam.state_dict()) == 12 * 14 + 11
    assert len(clip.state_dict()) == 24 * 12 + 5
    assert (_millions(sam), _millions(clip), _millions(projector)) == (95.57, 303.18, 2.62)


def test_no_non_persistent_state_leaks_into_state_dict() -> None:
    with torch.device("meta"):
        clip = DeepOcrClipEncoder()
    assert not any("position_ids" in k for k in clip.state_dict())
    assert set(clip.state_dict()) == {k for k, _ in clip.named_parameters()}


# --- small models ----------------------------------------------------------------------------------------

SMALL_SAM = SamConfig(
    width=32,
    layers=2,
    heads=2,
    image_size=128,
    window_size=14,
    global_attn_indexes=(1,),
    mlp_dim=64,
    out_chans=16,
    downsample_channels=(24, 32),
)
SMALL_CLIP = ClipConfig(width=32, layers=2, heads=2, image_size=56, patch_size=14, intermediate_size=64)
HIDDEN = 48


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Give every tensor (incl. zero-initialised rel-pos and pos tables) random values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)


@pytest.fixture(scope="module")
def towers() -> tuple[DeepOcrSamEncoder, DeepOcrClipEncoder, DeepOcrProjector, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    sam, clip = DeepOcrSamEncoder(SMALL_SAM).eval(), DeepOcrClipEncoder(SMALL_CLIP).eval()
    projector = DeepOcrProjector(SMALL_CLIP.width + SMALL_SAM.downsample_channels[-1], HIDDEN).eval()
    for seed, module in enumerate((sam, clip, projector)):
        _randomise(module, seed)
    return sam, clip, projector, torch.randn(HIDDEN), torch.randn(HIDDEN)


def _prepared(mode: Mode, grid: tuple[int, int] = (1, 1), seed: int = 0) -> PreparedImage:
    gen = torch.Generator().manual_seed(seed)
    side = {Mode.TINY: 512, Mode.SMALL: 640, Mode.BASE: 1024, Mode.LARGE: 1280, Mode.GUNDAM: 1024}[mode]
    n_tiles = grid[0] * grid[1]
    tiles = torch.rand(n_tiles, 3, 640, 640, generator=gen) * 2 - 1 if n_tiles > 1 else None
    view = torch.rand(3, side, side, generator=gen) * 2 - 1
    return PreparedImage(mode, grid, view, tiles, image_embeddings(mode, grid))


@pytest.mark.parametrize(("side", "grid"), [(512, 8), (640, 10), (192, 3), (128, 2)])
def test_sam_output_is_one_token_per_64_pixels(towers, side: int, grid: int) -> None:
    sam, clip, *_ = towers
    with torch.no_grad():
        features = sam(torch.randn(2, 3, side, side))
        hidden = clip(features)
    assert features.shape == (2, 32, grid, grid)
    assert hidden.shape == (2, 1 + grid * grid, 32)
    assert torch.isfinite(hidden).all()


@pytest.mark.parametrize(
    ("mode", "grid"),
    [
        (Mode.TINY, (1, 1)),
        (Mode.SMALL, (1, 1)),
        (Mode.BASE, (1, 1)),
        (Mode.GUNDAM, (1, 1)),
        (Mode.GUNDAM, (2, 3)),
    ],
)
def test_embed_images_length_matches_mode_table(towers, mode: Mode, grid: tuple[int, int]) -> None:
    sam, clip, projector, newline, separator = towers
    (out,) = embed_images(sam, clip, projector, newline, separator, [_prepared(mode, grid)])
    assert out.shape == (image_embeddings(mode, grid), HIDDEN)
    assert out.dtype == torch.float32
    assert torch.equal(out[-1], separator)


@pytest.mark.slow
def test_embed_images_large_mode(towers) -> None:
    sam, clip, projector, newline, separator = towers
    (out,) = embed_images(sam, clip, projector, newline, separator, [_prepared(Mode.LARGE)])
    assert out.shape == (421, HIDDEN)


def test_batched_equals_one_at_a_time(towers) -> None:
    sam, clip, projector, newline, separator = towers
    images = [
        _prepared(Mode.GUNDAM, (2, 1), seed=1),
        _prepared(Mode.TINY, seed=2),
        _prepared(Mode.GUNDAM, (1, 1), seed=3),
        _prepared(Mode.TINY, seed=4),
        _prepared(Mode.GUNDAM, (1, 2), seed=5),
    ]
    batched = embed_images(sam, clip, projector, newline, separator, images, max_views_per_call=3)
    for image, got in zip(images, batched, strict=True):
        (alone,) = embed_images(sam, clip, projector, newline, separator, [image])
        assert got.shape == alone.shape
        assert torch.allclose(got, alone, atol=1e-5, rtol=1e-5)


def test_layout_is_tiles_then_global_then_separator(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake encoder: token value = view id * 1000 + token index, so every position is recognisable."""

    def fake_encode(sam, clip, projector, pixel_values):  # noqa: ARG001
        b, _, side, _ = pixel_values.shape
        n = (side // 64) ** 2
        ids = pixel_values[:, 0, 0, 0].round()  # [B] view id planted in the first pixel
        values = ids[:, None] * 1000 + torch.arange(n, dtype=torch.float32)[None, :]  # [B, n]
        return values[..., None].expand(b, n, 2).clone()

    monkeypatch.setattr(vision, "encode_views", fake_encode)
    grid = (2, 3)  # nw=2, nh=3
    image = _prepared(Mode.GUNDAM, grid)
    image.global_view[0, 0, 0] = 7
    assert image.tiles is not None
    for k in range(6):
        image.tiles[k, 0, 0, 0] = k + 1
    newline, separator = torch.full((2,), -1.0), torch.full((2,), -2.0)
    projector = DeepOcrProjector(4, 2)
    (out,) = vision.embed_images(None, None, projector, newline, separator, [image], max_views_per_call=4)
    values = out[:, 0].tolist()

    g, h = 10, 16
    expected: list[float] = []
    for canvas_row in range(3 * g):
        tile_row, r = divmod(canvas_row, g)
        for canvas_col in range(2 * g):
            tile_col, c = divmod(canvas_col, g)
            tile_id = tile_row * 2 + tile_col + 1
            expected.append(tile_id * 1000 + r * g + c)
        expected.append(-1)
    for r in range(h):
        expected.extend(7000 + r * h + c for c in range(h))
        expected.append(-1)
    expected.append(-2)
    assert len(expected) == image_embeddings(Mode.GUNDAM, grid) == 903
    assert values == expected


def test_fused_features_are_clip_without_cls_then_sam(towers) -> None:
    sam, clip, *_ = towers
    identity = DeepOcrProjector(64, 64)
    with torch.no_grad():
        identity.layers.weight.copy_(torch.eye(64))
        identity.layers.bias.zero_()
        pixels = torch.randn(1, 3, 512, 512)
        fused = encode_views(sam, clip, identity, pixels)
        sam_features = sam(pixels)
        clip_hidden = clip(sam_features)
    assert fused.shape == (1, 64, 64)
    assert torch.allclose(fused[..., :32], clip_hidden[:, 1:], atol=1e-6)
    assert torch.allclose(fused[..., 32:], sam_features.flatten(2).transpose(1, 2), atol=1e-6)


def test_length_mismatch_is_reported(towers) -> None:
    sam, clip, projector, newline, separator = towers
    image = _prepared(Mode.TINY)
    wrong = PreparedImage(image.mode, image.grid, image.global_view, None, image.num_embeddings + 1)
    with pytest.raises(AssertionError, match="expected 74"):
        embed_images(sam, clip, projector, newline, separator, [wrong])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_runs_and_stays_close(towers, dtype: torch.dtype) -> None:
    sam, clip, projector, newline, separator = towers
    image = _prepared(Mode.TINY)
    (ref,) = embed_images(sam, clip, projector, newline, separator, [image])
    halves = [DeepOcrSamEncoder(SMALL_SAM), DeepOcrClipEncoder(SMALL_CLIP), DeepOcrProjector(64, HIDDEN)]
    for half, full in zip(halves, (sam, clip, projector), strict=True):
        half.load_state_dict(full.state_dict())
        half.to(dtype).eval()
    (out,) = embed_images(*halves, newline, separator, [image])
    assert out.dtype == dtype
    assert torch.isfinite(out).all()
    scale = ref.abs().max()
    assert (out.float() - ref).abs().max() < 0.05 * scale


# --- attention details ------------------------------------------------------------------------------------


def _reference_resize(table: np.ndarray, length: int) -> np.ndarray:
    """Linear resampling with half-pixel centres (align_corners=False), clamped at the ends."""
    old = table.shape[0]
    src = np.clip((np.arange(length) + 0.5) * old / length - 0.5, 0, old - 1)
    return np.stack([np.interp(src, np.arange(old), table[:, c]) for c in range(table.shape[1])], axis=1)


@pytest.mark.parametrize("length", [19, 9, 13])
def test_rel_pos_table_resampling_is_linear_half_pixel(length: int) -> None:
    table = torch.randn(13, 4)
    got = resize_rel_pos(table, length)
    assert got.shape == (length, 4)
    np.testing.assert_allclose(got.numpy(), _reference_resize(table.numpy(), length), atol=1e-5)


def test_rel_pos_resampling_happens_in_float32() -> None:
    table = torch.randn(27, 8).to(torch.bfloat16)
    got = resize_rel_pos(table, 39)
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, resize_rel_pos(table.float(), 39).to(torch.bfloat16))


@pytest.mark.parametrize(("size", "table_len"), [((5, 5), 9), ((6, 6), 9), ((4, 4), 7)])
def test_decomposed_bias_matches_pairwise_definition(size: tuple[int, int], table_len: int) -> None:
    h, w = size
    q = torch.randn(2, 3, h * w, 4, dtype=torch.float64)
    rel_h, rel_w = (
        torch.randn(table_len, 4, dtype=torch.float64),
        torch.randn(table_len, 4, dtype=torch.float64),
    )
    bias = decomposed_rel_pos_bias(q, rel_h, rel_w, size)
    table_h = torch.from_numpy(_reference_resize(rel_h.numpy(), 2 * h - 1))
    table_w = torch.from_numpy(_reference_resize(rel_w.numpy(), 2 * w - 1))
    want = torch.empty(2, 3, h * w, h * w, dtype=torch.float64)
    for i in range(h):
        for j in range(w):
            for k in range(h):
                for m in range(w):
                    qv = q[:, :, i * w + j]  # [2, 3, d]
                    want[:, :, i * w + j, k * w + m] = (
                        qv @ table_h[i - k + h - 1] + qv @ table_w[j - m + w - 1]
                    )
    # resize_rel_pos works in float32 by design, hence the float32-level tolerance
    assert torch.allclose(bias, want, atol=1e-5)


def test_sam_attention_is_softmax_of_scaled_scores_plus_unscaled_rel_pos(towers) -> None:
    sam = towers[0]
    attn = sam.blocks[1].attn  # global block: its 15-row tables get resized for this 5x5 grid
    x = torch.randn(1, 5, 5, 32)
    with torch.no_grad():
        got = attn(x)
        q, k, v = attn.qkv(x).reshape(1, 25, 3, 2, 16).permute(2, 0, 3, 1, 4)  # [B, heads, 25, 16] each
        bias = decomposed_rel_pos_bias(q, attn.rel_pos_h, attn.rel_pos_w, (5, 5))
        probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(16) + bias, dim=-1)
        want = attn.proj((probs @ v).transpose(1, 2).reshape(1, 5, 5, 32))
    assert attn.rel_pos_h.shape == (15, 16)
    assert torch.allclose(got, want, atol=1e-5)


def test_window_partition_pads_bottom_right_with_zeros_and_round_trips() -> None:
    x = torch.randn(2, 20, 17, 3)
    windows, padded = window_partition(x, 14)
    assert padded == (28, 28)
    assert windows.shape == (2 * 4, 14, 14, 3)
    # window (row 1, col 1) of image 0 holds rows 14..27 / cols 14..27: only rows <20, cols <17 are real
    corner = windows[3]
    assert torch.equal(corner[:6, :3], x[0, 14:20, 14:17])
    assert torch.all(corner[6:] == 0) and torch.all(corner[:, 3:] == 0)
    assert torch.equal(window_unpartition(windows, 14, padded, (20, 17)), x)


def test_abs_pos_resize_is_antialiased_bicubic_in_float32() -> None:
    grid = torch.randn(1, 8, 16, 16).to(torch.bfloat16)
    got = resize_abs_pos(grid, 10, 10)
    want = F.interpolate(grid.float(), size=(10, 10), mode="bicubic", antialias=True, align_corners=False)
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, want.to(torch.bfloat16))
    assert resize_abs_pos(grid, 16, 16) is grid


def test_clip_keeps_the_cls_position_row_when_resizing(towers) -> None:
    clip = towers[1]
    emb = clip.embeddings
    with torch.no_grad():
        features = torch.zeros(1, 32, 3, 3)
        out = emb(features)  # zero tokens: output = [cls, 0...] + positions
    table = emb.position_embedding.weight
    assert torch.allclose(out[0, 0], emb.class_embedding + table[0])
    grid = table[1:].reshape(1, 4, 4, 32).permute(0, 3, 1, 2)
    resized = resize_abs_pos(grid, 3, 3).permute(0, 2, 3, 1).reshape(9, 32)
    assert torch.allclose(out[0, 1:], resized)


def test_layer_norm_2d_normalises_channels_per_pixel() -> None:
    norm = LayerNorm2d(6)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(6))
        norm.bias.copy_(torch.randn(6))
    x = torch.randn(2, 6, 3, 4)
    want = F.layer_norm(x.permute(0, 2, 3, 1), (6,), norm.weight, norm.bias, eps=1e-6).permute(0, 3, 1, 2)
    assert torch.allclose(norm(x), want, atol=1e-5)
