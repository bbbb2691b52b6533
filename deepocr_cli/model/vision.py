"""DeepEncoder of DeepSeek-OCR: SAM-ViT-B with compressor, CLIP-L on SAM tokens, projector and embedding layout."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepocr_cli.model.image_processing import PreparedImage
from deepocr_cli.model.sam import DeepOcrSamEncoder, resize_abs_pos

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipConfig:
    """Geometry of the CLIP-L tower that runs on SAM tokens; defaults are the released checkpoint (facts §1.2)."""

    width: int = 1024
    layers: int = 24
    heads: int = 16
    image_size: int = 224
    patch_size: int = 14
    intermediate_size: int = 4096
    layer_norm_eps: float = 1e-5


class _ClipEmbeddings(nn.Module):
    def __init__(self, cfg: ClipConfig) -> None:
        super().__init__()
        self.grid = cfg.image_size // cfg.patch_size
        self.class_embedding = nn.Parameter(torch.zeros(cfg.width))
        # Kept only so the checkpoint loads strictly: the tower never sees pixels.
        self.patch_embedding = nn.Conv2d(
            3, cfg.width, kernel_size=cfg.patch_size, stride=cfg.patch_size, bias=False
        )
        self.position_embedding = nn.Embedding(self.grid * self.grid + 1, cfg.width)

    def forward(self, features: Tensor) -> Tensor:
        b, c, h, w = features.shape
        tokens = features.flatten(2).transpose(1, 2)  # [B, h*w, C], row-major
        cls = self.class_embedding.to(tokens.dtype).expand(b, 1, -1)
        table = self.position_embedding.weight  # [1 + g*g, C]
        grid_pos = table[1:].reshape(1, self.grid, self.grid, c).permute(0, 3, 1, 2)  # [1, C, g, g]
        grid_pos = resize_abs_pos(grid_pos, h, w).permute(0, 2, 3, 1).reshape(h * w, c)
        pos = torch.cat([table[:1], grid_pos], dim=0)  # [1 + h*w, C]; the CLS row is never resized
        return torch.cat([cls, tokens], dim=1) + pos


class _ClipAttention(nn.Module):
    def __init__(self, cfg: ClipConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.qkv_proj = nn.Linear(cfg.width, 3 * cfg.width)
        self.out_proj = nn.Linear(cfg.width, cfg.width)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        qkv = self.qkv_proj(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)  # [3, B, heads, N, d]
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # [B, heads, N, d]
        return self.out_proj(out.transpose(1, 2).reshape(b, n, c))


class _ClipMlp(nn.Module):
    def __init__(self, cfg: ClipConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(cfg.width, cfg.intermediate_size)
        self.fc2 = nn.Linear(cfg.intermediate_size, cfg.width)

    def forward(self, x: Tensor) -> Tensor:
        x = self.fc1(x)
        return self.fc2(x * torch.sigmoid(1.702 * x))  # quick_gelu


class _ClipLayer(nn.Module):
    def __init__(self, cfg: ClipConfig) -> None:
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.self_attn = _ClipAttention(cfg)
        self.layer_norm2 = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.mlp = _ClipMlp(cfg)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class _ClipTransformer(nn.Module):
    def __init__(self, cfg: ClipConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_ClipLayer(cfg) for _ in range(cfg.layers))

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class DeepOcrClipEncoder(nn.Module):
    """CLIP-L transformer fed with SAM compressor tokens instead of pixel patches (no post-norm).

    ``state_dict`` keys equal the checkpoint's keys under ``model.vision_model.``.
    """

    def __init__(self, cfg: ClipConfig | None = None) -> None:
        """Build the tower from ``cfg`` (default: the released geometry)."""
        super().__init__()
        cfg = cfg or ClipConfig()
        self.config = cfg
        self.embeddings = _ClipEmbeddings(cfg)
        self.pre_layrnorm = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)  # sic: checkpoint spelling
        self.transformer = _ClipTransformer(cfg)

    def forward(self, sam_features: Tensor) -> Tensor:
        """Map [B, C, h, w] SAM features to [B, 1 + h*w, width] hidden states (CLS first)."""
        return self.transformer(self.pre_layrnorm(self.embeddings(sam_features)))


class DeepOcrProjector(nn.Module):
    """The linear projector from fused [CLIP, SAM] features into the language model's embedding space."""

    def __init__(self, input_dim: int, n_embed: int) -> None:
        """Create ``layers`` = Linear(input_dim, n_embed) with bias (checkpoint ``model.projector.layers.*``)."""
        super().__init__()
        self.layers = nn.Linear(input_dim, n_embed)

    def forward(self, x: Tensor) -> Tensor:
        """Project [..., input_dim] to [..., n_embed]."""
        return self.layers(x)


def encode_views(
    sam: DeepOcrSamEncoder, clip: DeepOcrClipEncoder, projector: DeepOcrProjector, pixel_values: Tensor
) -> Tensor:
    """Run the whole DeepEncoder on a batch of square views.

    Args:
        sam: the SAM tower.
        clip: the CLIP tower.
        projector: the projector.
        pixel_values: [B, 3, S, S] in the model's dtype/device.

    Returns:
        [B, (S/64)**2, n_embed] projected tokens in row-major grid order.
    """
    sam_features = sam(pixel_values)  # [B, C, h, w]
    clip_tokens = clip(sam_features)[:, 1:]  # [B, h*w, width]: the CLS token is dropped
    sam_tokens = sam_features.flatten(2).transpose(1, 2)  # [B, h*w, C]
    return projector(torch.cat([clip_tokens, sam_tokens], dim=-1))  # CLIP half first, then SAM


def _encode_grouped(
    sam: DeepOcrSamEncoder,
    clip: DeepOcrClipEncoder,
    projector: DeepOcrProjector,
    views: Sequence[Tensor],
    chunk: int,
) -> list[Tensor]:
    """Encode stacks of views ([n_i, 3, S_i, S_i] each) with one batched call per side (chunked).

    Returns:
        One [n_i, (S_i/64)**2, n_embed] tensor per stack, in order, in the projector's dtype/device.
    """
    weight = projector.layers.weight
    by_side: dict[int, list[int]] = {}
    for i, stack in enumerate(views):
        by_side.setdefault(stack.shape[-1], []).append(i)
    out: dict[int, Tensor] = {}
    for indices in by_side.values():
        # Each (pinned, on CUDA) view goes to the device without blocking the host; joined and cast there.
        pixels = torch.cat([views[i].to(weight.device, non_blocking=True) for i in indices])  # [N, 3, S, S]
        feats = torch.cat(
            [
                encode_views(sam, clip, projector, pixels[j : j + chunk].to(weight.dtype))
                for j in range(0, pixels.shape[0], chunk)
            ]
        )  # [N, (S/64)**2, n_embed]
        for i, part in zip(indices, feats.split([views[i].shape[0] for i in indices]), strict=True):
            out[i] = part
    return [out[i] for i in range(len(views))]


def joined_embeddings(parts: list[Tensor], expected: int, idx: int) -> Tensor:
    """One image's embedding sequence [N, D] from its parts (tiles, global view, separator), checked against the
    placeholder count its prompt was built with (a mismatch is a bug in the layout, never a user error)."""
    embedded = torch.cat(parts, dim=0)
    if embedded.shape[0] != expected:
        raise AssertionError(f"image {idx}: {embedded.shape[0]} vision embeddings, expected {expected}")
    return embedded


def _with_newlines(grid: Tensor, newline: Tensor) -> Tensor:
    """Append one newline vector after every row of a [rows, cols, D] grid -> [rows * (cols + 1), D]."""
    rows, _, dim = grid.shape
    return torch.cat([grid, newline.expand(rows, 1, dim)], dim=1).reshape(-1, dim)


def _tile_canvas(feats: Tensor, grid: tuple[int, int]) -> Tensor:
    """Reassemble [nh*nw, g*g, D] row-major tile tokens into one [nh*g, nw*g, D] canvas."""
    nw, nh = grid
    g = math.isqrt(feats.shape[1])
    dim = feats.shape[-1]
    # tile rows outermost, then token rows inside a tile, then tile columns, then token columns
    return feats.view(nh, nw, g, g, dim).permute(0, 2, 1, 3, 4).reshape(nh * g, nw * g, dim)


@torch.no_grad()
def embed_images(
    sam: DeepOcrSamEncoder,
    clip: DeepOcrClipEncoder,
    projector: DeepOcrProjector,
    image_newline: Tensor,
    view_seperator: Tensor,
    images: Sequence[PreparedImage],
    max_views_per_call: int = 8,
) -> list[Tensor]:
    """Vision embeddings of prepared images, laid out as the language model expects them (facts §1.4).

    All global views of one size go through the encoder together, and so do all tiles of all images
    (in chunks of ``max_views_per_call``; a 1024 view's global-attention bias alone is ~0.4 GB in bf16).
    Per image the result is: the tile canvas (nh*g rows of nw*g tokens, a newline after each row) when
    tiled, then the global grid (a newline after each row), then one view separator.

    Args:
        sam: the SAM tower.
        clip: the CLIP tower.
        projector: the projector; its weight gives the output dtype and device.
        image_newline: [n_embed] learned row terminator.
        view_seperator: [n_embed] learned end-of-image vector (checkpoint spelling).
        images: prepared images, any mix of modes.
        max_views_per_call: most views per encoder call.

    Returns:
        One [num_embeddings_i, n_embed] tensor per image, in order.

    Raises:
        AssertionError: an image's layout length differs from its ``num_embeddings``.
    """
    weight = projector.layers.weight
    newline = image_newline.to(weight.device, weight.dtype)
    separator = view_seperator.to(weight.device, weight.dtype)
    chunk = max(1, max_views_per_call)
    global_feats = _encode_grouped(sam, clip, projector, [im.global_view[None] for im in images], chunk)
    tiled = [i for i, im in enumerate(images) if im.tiles is not None]
    tile_stacks = [im.tiles for im in images if im.tiles is not None]
    tile_feats = dict(zip(tiled, _encode_grouped(sam, clip, projector, tile_stacks, chunk), strict=True))

    results = []
    for idx, image in enumerate(images):
        parts = []
        if idx in tile_feats:
            parts.append(_with_newlines(_tile_canvas(tile_feats[idx], image.grid), newline))
        feats = global_feats[idx][0]  # [h*h, D]
        h = math.isqrt(feats.shape[0])
        parts += [_with_newlines(feats.view(h, h, -1), newline), separator[None, :]]
        results.append(joined_embeddings(parts, image.num_embeddings, idx))
    return results
