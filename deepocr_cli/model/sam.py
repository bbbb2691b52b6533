"""SAM-ViT-B of the DeepEncoder with its 16x compressor neck (facts §1.1): windowed and global attention with
decomposed relative positions; shared by DeepSeek-OCR and DeepSeek-OCR-2."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class SamConfig:
    """Geometry of the SAM-ViT-B tower and its 16x compressor; defaults are the released checkpoint (facts §1.1)."""

    width: int = 768
    layers: int = 12
    heads: int = 12
    patch_size: int = 16
    image_size: int = 1024  # pretrained side: sets pos_embed and the global blocks' rel-pos tables
    window_size: int = 14
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    mlp_dim: int = 3072
    out_chans: int = 256
    downsample_channels: tuple[int, ...] = (512, 1024)
    layer_norm_eps: float = 1e-6


def resize_abs_pos(grid_pos: Tensor, height: int, width: int) -> Tensor:
    """Bicubic-resize a [1, C, h0, w0] position grid to [1, C, height, width] (antialiased, in float32).

    The reference interpolates in float32 and casts back, so bf16/fp16 models see the same grid.
    """
    if grid_pos.shape[-2:] == (height, width):
        return grid_pos
    resized = F.interpolate(
        grid_pos.float(), size=(height, width), mode="bicubic", antialias=True, align_corners=False
    )
    return resized.to(grid_pos.dtype)


def resize_rel_pos(table: Tensor, length: int) -> Tensor:
    """Linearly resample a [L, C] relative-position table to [length, C] (float32 maths, cast back)."""
    if table.shape[0] == length:
        return table
    resized = F.interpolate(table.float().t().unsqueeze(0), size=length, mode="linear")  # [1, C, length]
    return resized[0].t().to(table.dtype)


def decomposed_rel_pos_bias(q: Tensor, rel_pos_h: Tensor, rel_pos_w: Tensor, size: tuple[int, int]) -> Tensor:
    """Additive attention bias of decomposed relative positions (MViTv2/SAM) for square self-attention.

    bias[(i, j), (k, l)] = q[(i, j)] . Rh[i - k + H - 1] + q[(i, j)] . Rw[j - l + W - 1], with the tables
    resized to 2*H-1 / 2*W-1 rows when the grid differs from the one they were trained for.

    Args:
        q: unscaled queries [B, heads, H*W, d].
        rel_pos_h: height table [Lh, d].
        rel_pos_w: width table [Lw, d].
        size: (H, W) of the token grid.

    Returns:
        [B, heads, H*W, H*W] bias in q's dtype.
    """
    h, w = size
    b, n_heads, _, d = q.shape
    table_h = resize_rel_pos(rel_pos_h, 2 * h - 1)
    table_w = resize_rel_pos(rel_pos_w, 2 * w - 1)
    rows = torch.arange(h, device=q.device)
    cols = torch.arange(w, device=q.device)
    r_h = table_h[rows[:, None] - rows[None, :] + h - 1]  # [H, H, d]
    r_w = table_w[cols[:, None] - cols[None, :] + w - 1]  # [W, W, d]
    grid_q = q.reshape(b * n_heads, h, w, d)
    bias_h = torch.einsum("nhwc,hkc->nhwk", grid_q, r_h).reshape(-1, h * w, h, 1)  # [N, H*W, H, 1]
    bias_w = torch.einsum("nhwc,wkc->nhwk", grid_q, r_w).reshape(-1, h * w, 1, w)  # [N, H*W, 1, W]
    # einsum may return permuted strides; the small reshapes above make them contiguous so the big
    # broadcast sum is born contiguous and the final view below costs no [HW, HW]-sized copy.
    bias = bias_h + bias_w  # [N, H*W, H, W]
    return bias.view(b, n_heads, h * w, h * w)


def window_partition(x: Tensor, window: int) -> tuple[Tensor, tuple[int, int]]:
    """Zero-pad [B, H, W, C] at the bottom/right to a multiple of ``window`` and cut it into windows.

    Returns:
        windows [B*nH*nW, window, window, C] and the padded (Hp, Wp).
    """
    b, h, w, c = x.shape
    pad_h, pad_w = (-h) % window, (-w) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window, window, wp // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window, window, c), (hp, wp)


def window_unpartition(
    windows: Tensor, window: int, padded: tuple[int, int], size: tuple[int, int]
) -> Tensor:
    """Inverse of :func:`window_partition`: reassemble windows and drop the padding -> [B, H, W, C]."""
    hp, wp = padded
    h, w = size
    b = windows.shape[0] // ((hp // window) * (wp // window))
    x = windows.view(b, hp // window, wp // window, window, window, -1).permute(0, 1, 3, 2, 4, 5)
    x = x.reshape(b, hp, wp, -1)
    return x[:, :h, :w, :].contiguous() if (hp, wp) != (h, w) else x


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of every pixel of a [B, C, H, W] map (ConvNeXt/SAM neck)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        """Create the norm with unit weight and zero bias."""
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        """Normalise [B, C, H, W] over C."""
        mean = x.mean(1, keepdim=True)  # [B, 1, H, W]
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class _SamPatchEmbed(nn.Module):
    def __init__(self, cfg: SamConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, cfg.width, kernel_size=cfg.patch_size, stride=cfg.patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).permute(0, 2, 3, 1)  # [B, 3, S, S] -> [B, S/p, S/p, width]


class _SamAttention(nn.Module):
    def __init__(self, cfg: SamConfig, table_size: int) -> None:
        super().__init__()
        self.heads = cfg.heads
        head_dim = cfg.width // cfg.heads
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width)
        self.proj = nn.Linear(cfg.width, cfg.width)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * table_size - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * table_size - 1, head_dim))

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.heads, -1).permute(2, 0, 3, 1, 4)  # [3, B, heads, HW, d]
        # Contiguous q/k/v keep the CPU SDPA kernel on its fast path (strided views are ~2x slower).
        q, k, v = qkv.contiguous().unbind(0)
        # The rel-pos terms use the unscaled query; SDPA then applies 1/sqrt(d) to q.k only.
        bias = decomposed_rel_pos_bias(q, self.rel_pos_h, self.rel_pos_w, (h, w))  # [B, heads, HW, HW]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # [B, heads, HW, d]
        out = out.transpose(1, 2).reshape(b, h, w, c)
        return self.proj(out)


class _SamMlp(nn.Module):
    def __init__(self, cfg: SamConfig) -> None:
        super().__init__()
        self.lin1 = nn.Linear(cfg.width, cfg.mlp_dim)
        self.lin2 = nn.Linear(cfg.mlp_dim, cfg.width)

    def forward(self, x: Tensor) -> Tensor:
        return self.lin2(F.gelu(self.lin1(x)))  # exact (erf) GELU


class _SamBlock(nn.Module):
    def __init__(self, cfg: SamConfig, is_global: bool) -> None:
        super().__init__()
        self.window = 0 if is_global else cfg.window_size
        table_size = cfg.image_size // cfg.patch_size if is_global else cfg.window_size
        self.norm1 = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.attn = _SamAttention(cfg, table_size)
        self.norm2 = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.mlp = _SamMlp(cfg)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[1], x.shape[2]
        y = self.norm1(x)
        if self.window:
            windows, padded = window_partition(y, self.window)  # padding happens after norm1, as upstream
            y = window_unpartition(self.attn(windows), self.window, padded, (h, w))
        else:
            y = self.attn(y)
        x = x + y
        return x + self.mlp(self.norm2(x))


class DeepOcrSamEncoder(nn.Module):
    """SAM-ViT-B image encoder plus neck and the two stride-2 convs (the 16x token compressor).

    ``state_dict`` keys equal the checkpoint's keys under ``model.sam_model.``.
    """

    def __init__(self, cfg: SamConfig | None = None) -> None:
        """Build the tower from ``cfg`` (default: the released geometry)."""
        super().__init__()
        cfg = cfg or SamConfig()
        self.config = cfg
        grid = cfg.image_size // cfg.patch_size
        self.patch_embed = _SamPatchEmbed(cfg)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, cfg.width))
        self.blocks = nn.ModuleList(_SamBlock(cfg, i in cfg.global_attn_indexes) for i in range(cfg.layers))
        self.neck = nn.Sequential(
            nn.Conv2d(cfg.width, cfg.out_chans, kernel_size=1, bias=False),
            LayerNorm2d(cfg.out_chans, cfg.layer_norm_eps),
            nn.Conv2d(cfg.out_chans, cfg.out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(cfg.out_chans, cfg.layer_norm_eps),
        )
        # The compressor convs are named net_2, net_3, ... in the checkpoint.
        self._compressor_names: list[str] = []
        channels = cfg.out_chans
        for i, out in enumerate(cfg.downsample_channels):
            name = f"net_{i + 2}"
            self.add_module(name, nn.Conv2d(channels, out, kernel_size=3, stride=2, padding=1, bias=False))
            self._compressor_names.append(name)
            channels = out

    def forward(self, pixel_values: Tensor) -> Tensor:
        """Encode [B, 3, S, S] pixels into [B, out_channels, S/64, S/64] compressed features."""
        x = self.patch_embed(pixel_values)  # [B, S/16, S/16, width]
        pos = self.pos_embed.permute(0, 3, 1, 2)  # [1, width, g, g]
        x = x + resize_abs_pos(pos, x.shape[1], x.shape[2]).permute(0, 2, 3, 1)
        for block in self.blocks:
            x = block(x)
        x = self.neck(x.permute(0, 3, 1, 2))  # [B, out_chans, S/16, S/16]
        for name in self._compressor_names:
            x = getattr(self, name)(x)  # halves each side
        return x
