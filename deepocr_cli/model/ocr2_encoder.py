"""DeepEncoder V2 of DeepSeek-OCR-2: a Qwen2-style encoder over [SAM tokens | learned causal-flow queries].

The SAM tower and its compressor are v1's (:class:`~deepocr_cli.model.vision.DeepOcrSamEncoder`, last
conv 896 wide). The RMSNorm, rotate-half RoPE and SwiGLU blocks are the decoder's. What is new here:
grouped-query attention with q/k/v biases, the hybrid mask (facts §8.1: visual tokens see every
visual token, query i sees every visual token and queries 0..i), the two query tables, and the
embedding layout (tiles, global view, separator; no newline vectors).

Module names equal the original checkpoint keys under ``model.qwen2_model.`` (the official code nests
the transformer as ``model.model``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepocr_cli.model.decoder import DeepOcrMLP, DeepOcrRMSNorm, apply_rotary_pos_emb, rope_cos_sin
from deepocr_cli.model.image_processing import PreparedImage
from deepocr_cli.model.ocr2_config import QUERIES_768, QUERIES_1024, Ocr2EncoderConfig
from deepocr_cli.model.sam import DeepOcrSamEncoder
from deepocr_cli.model.vision import DeepOcrProjector, joined_embeddings

log = logging.getLogger(__name__)


def hybrid_mask(num_visual: int, device: torch.device | None = None) -> Tensor:
    """Boolean [2m, 2m] mask (True = may attend) of [m visual tokens | m queries].

    Visual rows see all visual columns and no query; query row i sees all visual columns and
    queries 0..i.
    """
    m = num_visual
    total = 2 * m
    rows = torch.arange(total, device=device)[:, None]
    cols = torch.arange(total, device=device)[None, :]
    visual_col = cols < m
    return torch.where(rows < m, visual_col, visual_col | (cols <= rows))


class _Ocr2Attention(nn.Module):
    def __init__(self, cfg: Ocr2EncoderConfig) -> None:
        super().__init__()
        d = cfg.head_dim
        self.heads = cfg.num_attention_heads
        self.kv_heads = cfg.num_key_value_heads
        self.head_dim = d
        self.q_proj = nn.Linear(cfg.hidden_size, self.heads * d, bias=True)
        self.k_proj = nn.Linear(cfg.hidden_size, self.kv_heads * d, bias=True)
        self.v_proj = nn.Linear(cfg.hidden_size, self.kv_heads * d, bias=True)
        self.o_proj = nn.Linear(self.heads * d, cfg.hidden_size, bias=False)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor) -> Tensor:
        b, n, _ = x.shape
        q = self.q_proj(x).view(b, n, self.heads, self.head_dim).transpose(1, 2)  # [B, h, N, d]
        k = self.k_proj(x).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)  # [B, kv, N, d]
        v = self.v_proj(x).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        groups = self.heads // self.kv_heads
        if groups > 1:  # each KV head serves `groups` consecutive query heads
            k = k.repeat_interleave(groups, dim=1)
            v = v.repeat_interleave(groups, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, h, N, d]
        return self.o_proj(out.transpose(1, 2).reshape(b, n, -1))


class _Ocr2Layer(nn.Module):
    def __init__(self, cfg: Ocr2EncoderConfig) -> None:
        super().__init__()
        self.self_attn = _Ocr2Attention(cfg)
        self.mlp = DeepOcrMLP(cfg.hidden_size, cfg.intermediate_size)
        self.input_layernorm = DeepOcrRMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps)
        self.post_attention_layernorm = DeepOcrRMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor) -> Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class _Ocr2Transformer(nn.Module):
    """``layers`` + final ``norm`` (checkpoint ``qwen2_model.model.model.*``)."""

    def __init__(self, cfg: Ocr2EncoderConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_Ocr2Layer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = DeepOcrRMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps)


class _Ocr2Wrapper(nn.Module):
    """The official code's extra nesting level (``qwen2_model.model`` holds ``model``)."""

    def __init__(self, cfg: Ocr2EncoderConfig) -> None:
        super().__init__()
        self.model = _Ocr2Transformer(cfg)


class DeepOcr2Encoder(nn.Module):
    """Qwen2 encoder plus the two query tables (checkpoint ``model.qwen2_model.*``)."""

    def __init__(self, cfg: Ocr2EncoderConfig) -> None:
        super().__init__()
        self.config = cfg
        self.model = _Ocr2Wrapper(cfg)
        self.query_768 = nn.Embedding(QUERIES_768, cfg.hidden_size)
        self.query_1024 = nn.Embedding(QUERIES_1024, cfg.hidden_size)

    def queries_for(self, num_visual: int) -> Tensor:
        """The query table of a view with ``num_visual`` SAM tokens.

        The original code accepts exactly 144 (768 tile) or 256 (1024 global view); transformers'
        port takes the 768 table for anything up to 144 and the 1024 table otherwise. Both agree on
        the two sizes the model was trained for, the only ones our preprocessing makes.

        Raises:
            ValueError: another token count (the tables have fixed lengths).
        """
        if num_visual == QUERIES_768:
            return self.query_768.weight
        if num_visual == QUERIES_1024:
            return self.query_1024.weight
        raise ValueError(f"DeepSeek-OCR-2 views must give 144 or 256 SAM tokens, got {num_visual}")

    def forward(self, sam_features: Tensor) -> Tensor:
        """[B, C, h, w] SAM features -> [B, h*w, C] final-normed query outputs, in query order."""
        tokens = sam_features.flatten(2).transpose(1, 2)  # [B, m, C] row-major
        b, m, _ = tokens.shape
        queries = self.queries_for(m).to(tokens.dtype)[None].expand(b, -1, -1)  # [B, m, C]
        x = torch.cat([tokens, queries], dim=1)  # [B, 2m, C]
        positions = torch.arange(2 * m, device=x.device)[None].expand(b, -1)
        cos, sin = rope_cos_sin(positions, self.config.head_dim, self.config.rope_theta, x.dtype)
        mask = hybrid_mask(m, x.device)
        inner = self.model.model
        for layer in inner.layers:
            x = layer(x, cos, sin, mask)
        return inner.norm(x)[:, m:]


def encode_views_ocr2(
    sam: DeepOcrSamEncoder, encoder: DeepOcr2Encoder, projector: DeepOcrProjector, pixel_values: Tensor
) -> Tensor:
    """[B, 3, S, S] views -> [B, (S/64)**2, n_embed] projected query outputs."""
    return projector(encoder(sam(pixel_values)))


def _encode_stacks(
    sam: DeepOcrSamEncoder,
    encoder: DeepOcr2Encoder,
    projector: DeepOcrProjector,
    stacks: Sequence[Tensor],
    chunk: int,
) -> list[Tensor]:
    """Encode [n_i, 3, S, S] stacks of one side S with batched calls of at most ``chunk`` views."""
    if not stacks:
        return []
    weight = projector.layers.weight
    # Each (pinned, on CUDA) stack goes to the device without blocking the host; joined and cast there.
    pixels = torch.cat([s.to(weight.device, non_blocking=True) for s in stacks])  # [N, 3, S, S]
    feats = torch.cat(
        [
            encode_views_ocr2(sam, encoder, projector, pixels[j : j + chunk].to(weight.dtype))
            for j in range(0, pixels.shape[0], chunk)
        ]
    )
    return list(feats.split([s.shape[0] for s in stacks]))


@torch.no_grad()
def embed_images_ocr2(
    sam: DeepOcrSamEncoder,
    encoder: DeepOcr2Encoder,
    projector: DeepOcrProjector,
    view_seperator: Tensor,
    images: Sequence[PreparedImage],
    max_views_per_call: int = 8,
) -> list[Tensor]:
    """Vision embeddings of prepared OCR-2 images: [tile 0 | ... | tile k-1 | global | separator].

    Each tile contributes its 144 query outputs and the global view its 256, in query order; there
    are no newline vectors (facts §8.2). All global views go through the encoder together, and so do
    all tiles of all images.

    Raises:
        AssertionError: an image's layout length differs from its ``num_embeddings``.
    """
    weight = projector.layers.weight
    separator = view_seperator.to(weight.device, weight.dtype)[None, :]
    chunk = max(1, max_views_per_call)
    globals_ = _encode_stacks(sam, encoder, projector, [im.global_view[None] for im in images], chunk)
    tiled = [i for i, im in enumerate(images) if im.tiles is not None]
    tile_feats = dict(
        zip(
            tiled,
            _encode_stacks(sam, encoder, projector, [images[i].tiles for i in tiled], chunk),
            strict=True,
        )
    )
    results = []
    for idx, image in enumerate(images):
        parts = [tile_feats[idx].reshape(-1, weight.shape[0])] if idx in tile_feats else []
        parts += [globals_[idx][0], separator]
        results.append(joined_embeddings(parts, image.num_embeddings, idx))
    return results
