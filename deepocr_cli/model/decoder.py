"""The DeepSeek-MoE language model of DeepSeek-OCR (MHA, RoPE, dense layer 0, routed+shared experts).

Why not transformers' DeepseekV2 classes: in transformers 5.x they implement multi-head *latent*
attention and store experts fused (``experts.gate_up_proj`` [E, 2I, H]), so neither the maths of
this MHA variant nor the checkpoint key names (``mlp.experts.{e}.gate_proj.weight``) match. The
only blocks that match exactly are Llama's RMSNorm (fp32 variance, weight times the input-dtype
result) and rotate-half RoPE, but importing ``transformers.models.llama.modeling_llama`` costs ~3 s
of start-up on a small machine for two ten-line functions, so they are re-stated here with the
same arithmetic (and checked against the Llama versions in tests/model/test_decoder.py).
Everything else is written for batched inference over a paged KV cache: the attention calls
``paged.attend(layer, q, k, v)`` of the batch object the generation engine passes
(``deepocr_cli.engine.kv_cache.PagedBatch``), so the model needs nothing from the engine.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deepocr_cli.model.configuration import DecoderConfig

log = logging.getLogger(__name__)

class DeepOcrRMSNorm(nn.Module):
    """RMSNorm computed in fp32, then weight * result in the input dtype (= DeepseekV2/Llama RMSNorm)."""

    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[..., H] -> [..., H]."""
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * x.to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """[..., D] -> [-x2, x1] with x1, x2 the two halves of the last dim."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary_pos_emb(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate q, k [B, h, L, D] by cos/sin [B, L, D] (broadcast over heads)."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # [B, 1, L, D]
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


def rope_cos_sin(
    position_ids: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate-half RoPE tables for arbitrary per-row positions.

    Args:
        position_ids: [B, L] integer positions.
        head_dim: rotary width (the full head dim).
        theta: RoPE base.
        dtype: dtype of the returned tables (computed in fp32, cast like LlamaRotaryEmbedding).

    Returns:
        cos, sin: [B, L, head_dim] each.
    """
    inv_freq = 1.0 / (
        theta ** (torch.arange(0, head_dim, 2, device=position_ids.device, dtype=torch.float32) / head_dim)
    )  # [D/2]
    freqs = position_ids.float()[..., None] * inv_freq  # [B, L, D/2]
    emb = torch.cat((freqs, freqs), dim=-1)  # [B, L, D]
    return emb.cos().to(dtype), emb.sin().to(dtype)


class DeepOcrAttention(nn.Module):
    """Plain multi-head self-attention with RoPE over the full head dim (no bias)."""

    def __init__(self, cfg: DecoderConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = cfg.num_attention_heads
        self.head_dim = cfg.head_dim
        width = self.num_heads * self.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, width, bias=cfg.attention_bias)
        self.k_proj = nn.Linear(cfg.hidden_size, width, bias=cfg.attention_bias)
        self.v_proj = nn.Linear(cfg.hidden_size, width, bias=cfg.attention_bias)
        self.o_proj = nn.Linear(width, cfg.hidden_size, bias=cfg.attention_bias)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        paged: Any,
    ) -> torch.Tensor:
        """Attend x [B, L, H]: to itself under ``mask`` [B, 1, L, L], or to its cached prefix via ``paged``."""
        b, length, _ = x.shape
        q = self.q_proj(x).view(b, length, self.num_heads, self.head_dim).transpose(1, 2)  # [B, h, L, D]
        k = self.k_proj(x).view(b, length, self.num_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, length, self.num_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        if paged is not None:
            out = paged.attend(self.layer_idx, q, k, v)  # [B, h, L, D]
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, h, L, D]
        return self.o_proj(out.transpose(1, 2).reshape(b, length, -1))


class DeepOcrMLP(nn.Module):
    """SwiGLU feed-forward: down(silu(gate(x)) * up(x))."""

    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[..., H] -> [..., H]."""
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DeepOcrGate(nn.Module):
    """Expert router: softmax over expert logits in fp32, greedy top-k, optional renormalisation."""

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.top_k = cfg.num_experts_per_tok
        self.norm_topk_prob = cfg.norm_topk_prob
        self.scaling = cfg.routed_scaling_factor
        self.weight = nn.Parameter(torch.empty(cfg.n_routed_experts, cfg.hidden_size))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [T, H] -> (expert ids [T, k] int64, weights [T, k] fp32)."""
        scores = F.linear(x.float(), self.weight.float()).softmax(dim=-1)  # [T, E]
        weights, ids = torch.topk(scores, self.top_k, dim=-1, sorted=False)
        if self.top_k > 1 and self.norm_topk_prob:
            weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
        return ids, weights * self.scaling


@dataclass
class _FusedExperts:
    """Stacked expert weights the per-expert parameters are views of."""

    gate_up: torch.Tensor  # [E, 2I, H]
    down: torch.Tensor  # [E, H, I]


class DeepOcrMoE(nn.Module):
    """Routed experts plus always-on shared experts (one SwiGLU of width n_shared * moe_intermediate).

    Tokens are routed per expert: (token, expert) pairs are sorted by expert, each expert runs once
    on its contiguous slice, and weighted outputs are summed back with ``index_add_``. After
    :meth:`fuse` the experts' weights live in two stacked tensors; on CUDA with bf16 this enables
    ``torch._grouped_mm`` (one kernel per projection, no host sync on the per-expert counts).
    While a CUDA graph is being captured the forward never reads the counts on the host: grouped
    GEMM where it runs, else ``dense`` (every expert on every token, weights zero off the top-k:
    more FLOPs, the same weight reads as soon as a decode batch touches every expert).
    """

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.num_experts = cfg.n_routed_experts
        self.top_k = cfg.num_experts_per_tok
        self.gate = DeepOcrGate(cfg)
        self.experts = nn.ModuleList(
            DeepOcrMLP(cfg.hidden_size, cfg.moe_intermediate_size) for _ in range(cfg.n_routed_experts)
        )
        self.shared_experts = (
            DeepOcrMLP(cfg.hidden_size, cfg.moe_intermediate_size * cfg.n_shared_experts)
            if cfg.n_shared_experts
            else None
        )
        self._fused: _FusedExperts | None = None
        #: "auto" (grouped_mm on CUDA bf16 when fused), "grouped", "dense" or "loop"; tests force each path.
        self.backend = "auto"
        #: dispatch while a CUDA graph is captured: None (grouped GEMM where it runs, else dense) or "dense"
        self.capture_path: str | None = None

    @torch.no_grad()
    def fuse(self) -> None:
        """Stack expert weights into [E, 2I, H] / [E, H, I] and make every expert weight a view.

        state_dict keys and values are unchanged; memory is not duplicated (the old per-expert
        tensors are released).
        """
        if self._fused is not None or self.experts[0].gate_proj.weight.is_meta:
            return
        gate_up = torch.stack(
            [torch.cat([e.gate_proj.weight, e.up_proj.weight], dim=0) for e in self.experts]
        )  # [E, 2I, H]
        down = torch.stack([e.down_proj.weight for e in self.experts])  # [E, H, I]
        inter = gate_up.shape[1] // 2
        for i, e in enumerate(self.experts):
            e.gate_proj.weight = nn.Parameter(gate_up[i, :inter], requires_grad=False)
            e.up_proj.weight = nn.Parameter(gate_up[i, inter:], requires_grad=False)
            e.down_proj.weight = nn.Parameter(down[i], requires_grad=False)
        self._fused = _FusedExperts(gate_up, down)

    def _path(self, x: torch.Tensor) -> str:
        """The expert dispatch for this call: "grouped", "dense" or "loop"."""
        grouped_ok = self._fused is not None and hasattr(torch, "_grouped_mm")
        if x.is_cuda and torch.cuda.is_current_stream_capturing():  # no host read of the counts
            if self.capture_path is not None:
                return self.capture_path
            auto = grouped_ok and x.dtype == torch.bfloat16 and torch.cuda.get_device_capability(x.device)[0] >= 9
            return "grouped" if auto or (grouped_ok and self.backend == "grouped") else "dense"
        if self.backend in ("loop", "dense"):
            return self.backend
        if not grouped_ok:
            return "loop"
        if self.backend == "grouped":
            return "grouped"
        cuda_bf16 = x.is_cuda and x.dtype == torch.bfloat16
        return "grouped" if cuda_bf16 and torch.cuda.get_device_capability(x.device)[0] >= 9 else "loop"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L, H] -> [B, L, H]."""
        shape = x.shape
        flat = x.reshape(-1, shape[-1])  # [T, H]
        ids, weights = self.gate(flat)  # [T, k] each
        path = self._path(flat)
        if path == "dense":
            y = self._dense(flat, ids, weights).to(x.dtype).view(shape)
            return y + self.shared_experts(x) if self.shared_experts is not None else y
        flat_ids = ids.reshape(-1)  # [T*k]
        order = flat_ids.argsort(stable=True)  # pairs grouped by expert
        token_of = order // self.top_k  # [T*k] source token of each sorted pair
        sorted_x = flat.index_select(0, token_of)  # [T*k, H]
        # Counted with a scatter, not bincount: CUDA's bincount reads the largest id on the host.
        counts = torch.zeros(self.num_experts, dtype=torch.long, device=flat.device)
        counts.index_add_(0, flat_ids, torch.ones_like(flat_ids))  # [E]
        out = self._grouped(sorted_x, counts) if path == "grouped" else self._loop(sorted_x, counts)  # [T*k, H]
        # Weighted sum in fp32 like the reference (weights are fp32 softmax probabilities).
        contrib = out.float() * weights.reshape(-1).index_select(0, order)[:, None]
        routed = torch.zeros(flat.shape, dtype=torch.float32, device=flat.device)
        routed.index_add_(0, token_of, contrib)
        y = routed.to(x.dtype).view(shape)
        if self.shared_experts is not None:
            y = y + self.shared_experts(x)
        return y

    def _loop(self, sorted_x: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """One matmul chain per expert that received tokens (one host sync for the counts)."""
        out = torch.empty_like(sorted_x)
        start = 0
        for e, n in enumerate(counts.tolist()):
            if n:
                out[start : start + n] = self.experts[e](sorted_x[start : start + n])
                start += n
        return out

    def _dense(self, flat: torch.Tensor, ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Every expert on every token, summed with the router weights (zero off the top-k): fp32 [T, H]."""
        if self._fused is None:
            self.fuse()
        fused = self._fused
        if fused is None:  # meta weights: nothing to compute with
            raise RuntimeError("experts are not materialised")
        dense_w = torch.zeros(flat.shape[0], self.num_experts, dtype=torch.float32, device=flat.device)
        dense_w.scatter_(1, ids, weights)  # [T, E]
        gu = torch.matmul(flat[None], fused.gate_up.transpose(1, 2))  # [E, T, 2I]
        g, u = gu.chunk(2, dim=-1)
        out = torch.bmm(F.silu(g) * u, fused.down.transpose(1, 2))  # [E, T, H]
        return (out.float() * dense_w.t()[:, :, None]).sum(dim=0)  # [T, H]

    def _grouped(self, sorted_x: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Two grouped GEMMs over all experts; offsets stay on the device."""
        assert self._fused is not None
        offs = counts.cumsum(0).to(torch.int32)  # [E] end offset of each expert's slice
        gu = torch._grouped_mm(sorted_x, self._fused.gate_up.transpose(1, 2), offs=offs)  # [T*k, 2I]
        g, u = gu.chunk(2, dim=-1)
        return torch._grouped_mm(F.silu(g) * u, self._fused.down.transpose(1, 2), offs=offs)  # [T*k, H]


class DeepOcrDecoderLayer(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x)) with a dense or MoE MLP."""

    def __init__(self, cfg: DecoderConfig, layer_idx: int) -> None:
        super().__init__()
        self.self_attn = DeepOcrAttention(cfg, layer_idx)
        self.mlp: nn.Module = (
            DeepOcrMoE(cfg)
            if cfg.is_moe_layer(layer_idx)
            else DeepOcrMLP(cfg.hidden_size, cfg.intermediate_size)
        )
        self.input_layernorm = DeepOcrRMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps)
        self.post_attention_layernorm = DeepOcrRMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps)

    def forward(self, x, cos, sin, mask, paged):  # noqa: D102 - same contract as DeepOcrAttention
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, paged)
        return x + self.mlp(self.post_attention_layernorm(x))


class DeepOcrTextModel(nn.Module):
    """Token embeddings, decoder layers and the final norm (checkpoint prefix ``model.``)."""

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DeepOcrDecoderLayer(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = DeepOcrRMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps)

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        position_ids: torch.Tensor,
        valid: torch.Tensor,
        paged: Any = None,
    ) -> torch.Tensor:
        """Run the decoder on new positions.

        Args:
            inputs_embeds: [B, L, H] embeddings of the new positions.
            position_ids: [B, L] RoPE positions (per row; padding may hold anything).
            valid: [B, L] True for real tokens (only read without ``paged``).
            paged: the paged KV cache batch to read and extend (positions after each row's cached
                prefix); None for a cache-less causal forward over the whole sequence.

        Returns:
            Final-normed hidden states [B, L, H].
        """
        mask = None
        if paged is None:
            length = inputs_embeds.shape[1]
            pos = torch.arange(length, device=valid.device)
            causal = pos[None, :] <= pos[:, None]  # [L, L]
            # A padded query would see no key at all (NaN softmax); let it see itself too.
            mask = (causal[None] & valid[:, None, :]) | torch.eye(length, dtype=torch.bool, device=valid.device)
            mask = mask[:, None]  # [B, 1, L, L]
        cos, sin = rope_cos_sin(position_ids, self.cfg.head_dim, self.cfg.rope_theta, inputs_embeds.dtype)
        x = inputs_embeds
        for layer in self.layers:
            x = layer(x, cos, sin, mask, paged)
        return self.norm(x)

    def fuse_experts(self) -> None:
        """Stack routed-expert weights of every MoE layer (see :meth:`DeepOcrMoE.fuse`)."""
        for layer in self.layers:
            if isinstance(layer.mlp, DeepOcrMoE):
                layer.mlp.fuse()
