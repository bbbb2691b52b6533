"""Packed prefill: the new tokens of several sequences in one row, no padding, attended by a varlen kernel.

The padded prefill (:meth:`PagedKVCache.batch`) lays B chunks out as [B, longest] and masks the
padding; with chunks of 900 and 30 tokens most of that batch is padding. Packing puts the chunks end
to end ([1, total]) and describes them the way flash-attn's varlen kernels take them:

    cu_seqlens_q = [0, n_0, n_0 + n_1, ...]                 new tokens per sequence (queries)
    cu_seqlens_k = [0, c_0 + n_0, c_0 + n_0 + c_1 + n_1, ...]  cached + new positions (keys)

Keys of sequence i are its whole prefix (gathered from its KV pages into one packed tensor), and a
query at offset t of chunk i sees keys up to c_i + t (causal, aligned to the end of the keys).
Kernels (``prefill_attention``):

* ``varlen``: ``flash_attn.flash_attn_varlen_func`` (CUDA, bf16/fp16, when importable); any function
  of the same signature can stand in for it: :func:`sdpa_varlen` is the per-sequence SDPA reference
  the tests check our packing with.
* ``flex``: ``torch.nn.attention.flex_attention`` with a block mask built once per forward from the
  sequence ids and positions (compiled on CUDA; eager elsewhere, where it materialises the scores).

The MLP, MoE, norms and RoPE work per token, so the rest of the decoder runs on the packed row as is.
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from deepocr_cli.engine.kv_cache import PagedKVCache

log = logging.getLogger(__name__)

#: flash_attn_varlen_func's leading parameters: (q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
#: max_seqlen_k, ..., causal=...) with q [total_q, h, D], k and v [total_k, h, D]; returns [total_q, h, D].
VarlenFn = Callable[..., torch.Tensor]

PREFILL_KERNELS = ("auto", "sdpa", "flex", "varlen")


def flash_attn_varlen() -> VarlenFn | None:  # pragma: no cover - only where flash_attn is installed (CUDA)
    """flash_attn's varlen kernel, or None when the package is not importable."""
    try:
        from flash_attn import flash_attn_varlen_func as fn
    except Exception:  # ImportError, or a broken build raising anything at import
        return None
    return fn


def sdpa_varlen(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens_q: torch.Tensor,
                cu_seqlens_k: torch.Tensor, max_seqlen_q: int, max_seqlen_k: int, causal: bool = False,
                **_: Any) -> torch.Tensor:
    """``flash_attn_varlen_func`` semantics with one SDPA call per sequence (reference and fallback).

    Causal masking is aligned to the end of the keys, like flash-attn >= 2.1: query t of a sequence
    with n queries and m keys sees keys 0 .. m - n + t.
    """
    out = torch.empty_like(q)
    cq, ck = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
    for i in range(len(cq) - 1):
        qs, ks = q[cq[i] : cq[i + 1]].transpose(0, 1), k[ck[i] : ck[i + 1]].transpose(0, 1)  # [h, n, D], [h, m, D]
        n, m = qs.shape[1], ks.shape[1]
        assert n <= max_seqlen_q and m <= max_seqlen_k, "max_seqlen smaller than a sequence"
        mask = None
        if causal:
            mask = torch.arange(m, device=q.device)[None, :] <= (m - n + torch.arange(n, device=q.device))[:, None]
        vs = v[ck[i] : ck[i + 1]].transpose(0, 1)
        out[cq[i] : cq[i + 1]] = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask).transpose(0, 1)
    return out


class _Flex:
    """flex_attention, compiled on CUDA; eager elsewhere, or after the compiled call failed once (warned).

    The eager version materialises the scores ([h, total_q, total_k] per call): fine for tests and as a
    fallback, not fast.
    """

    def __init__(self) -> None:
        from torch.nn.attention.flex_attention import flex_attention

        self.eager = flex_attention
        self.compiled = torch.compile(flex_attention, dynamic=True) if torch.cuda.is_available() else None

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_mask: Any) -> torch.Tensor:
        if self.compiled is not None and q.is_cuda:  # pragma: no cover - CUDA only
            try:
                return self.compiled(q, k, v, block_mask=block_mask)
            except torch.OutOfMemoryError:
                raise
            except Exception as exc:  # noqa: BLE001 - a compiler failure costs speed, never the run
                log.warning("flex_attention did not compile (%s); running it eagerly", type(exc).__name__)
                self.compiled = None
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
            return self.eager(q, k, v, block_mask=block_mask)


@functools.cache
def _flex() -> _Flex:
    return _Flex()


@dataclass
class PackedBatch:
    """What one packed prefill forward needs (built by :func:`pack`); ``attend`` is the decoder's hook.

    Attributes:
        positions: [1, total_q] RoPE positions of the packed new tokens.
        valid: [1, total_q] all True.
        last: [rows] index in the packed row of each sequence's last new token.
        cu_seqlens_q, cu_seqlens_k: [rows + 1] int32 offsets of queries and keys.
        max_seqlen_q, max_seqlen_k: longest chunk and longest prefix.
    """

    cache: PagedKVCache
    kernel: str  # "flex" or "varlen"
    varlen: VarlenFn | None
    positions: torch.Tensor
    valid: torch.Tensor
    last: torch.Tensor
    write_slots: torch.Tensor  # [total_q] flat cache row of each new token
    key_rows: torch.Tensor  # [total_k] flat cache row of each key position
    key_positions: torch.Tensor  # [total_k] position of each key in its sequence
    key_seq: torch.Tensor  # [total_k] sequence number of each key
    query_seq: torch.Tensor  # [total_q] sequence number of each query
    cu_seqlens_q: torch.Tensor
    cu_seqlens_k: torch.Tensor
    max_seqlen_q: int
    max_seqlen_k: int
    _block_mask: Any = field(default=None, repr=False)

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Store k, v [1, h, total_q, D] in the pages and attend q [1, h, total_q, D] over each prefix."""
        cache = self.cache
        cache.keys[layer].index_copy_(0, self.write_slots, k[0].transpose(0, 1).to(cache.dtype))
        cache.values[layer].index_copy_(0, self.write_slots, v[0].transpose(0, 1).to(cache.dtype))
        keys = cache.keys[layer][self.key_rows].to(q.dtype)  # [total_k, h, D]
        values = cache.values[layer][self.key_rows].to(q.dtype)
        if self.kernel == "flex":
            return self._flex(q, keys.transpose(0, 1)[None], values.transpose(0, 1)[None])
        assert self.varlen is not None
        out = self.varlen(q[0].transpose(0, 1), keys, values, self.cu_seqlens_q, self.cu_seqlens_k,
                          self.max_seqlen_q, self.max_seqlen_k, causal=True)  # [total_q, h, D]
        return out.transpose(0, 1)[None]

    def _flex(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        from torch.nn.attention.flex_attention import create_block_mask

        if self._block_mask is None:  # once per forward, shared by every layer
            qs, qp, ks, kp = self.query_seq, self.positions[0], self.key_seq, self.key_positions

            def same_sequence_causal(b, h, q_idx, kv_idx):  # noqa: ANN001, ANN202 - flex's mask_mod signature
                return (qs[q_idx] == ks[kv_idx]) & (kp[kv_idx] <= qp[q_idx])

            self._block_mask = create_block_mask(same_sequence_causal, None, None, q.shape[2], keys.shape[2],
                                                 device=str(q.device))
        return _flex()(q, keys, values, block_mask=self._block_mask)


def pack(cache: PagedKVCache, slots: list[int], cached: list[int], new: list[int], kernel: str,
         varlen: VarlenFn | None = None) -> PackedBatch:
    """Packed-prefill metadata for rows that each append ``new[i]`` positions after ``cached[i]`` ones.

    The caller must have grown every slot to ``cached[i] + new[i]`` positions. Built on the host from
    the host block tables, then copied to the device in one go per tensor (no device-side syncs).
    """
    if kernel not in ("flex", "varlen"):
        raise ValueError(f"packed prefill runs flex or varlen, not {kernel!r}")
    if kernel == "varlen" and varlen is None:
        raise ValueError("kernel='varlen' needs a varlen function (flash_attn_varlen_func or sdpa_varlen)")
    bs = cache.block_size
    q_pos, k_pos, k_seq, q_seq = [], [], [], []
    for i, (c, n) in enumerate(zip(cached, new, strict=True)):
        q_pos.append(torch.arange(c, c + n))
        k_pos.append(torch.arange(c + n))
        k_seq.append(torch.full((c + n,), i))
        q_seq.append(torch.full((n,), i))
    qp, kp = torch.cat(q_pos), torch.cat(k_pos)
    q_owner, k_owner = torch.cat(q_seq), torch.cat(k_seq)
    tables = cache.tables.index_select(0, torch.tensor(slots)).long()  # [rows, blocks per sequence]
    write = tables[q_owner, qp // bs] * bs + qp % bs
    rows = tables[k_owner, kp // bs] * bs + kp % bs
    ends = torch.tensor(new).cumsum(0)
    zero = torch.zeros(1, dtype=torch.long)
    cu_q = torch.cat([zero, ends]).to(torch.int32)
    cu_k = torch.cat([zero, torch.tensor([c + n for c, n in zip(cached, new, strict=True)]).cumsum(0)]).to(torch.int32)
    dev = cache.device
    move = (lambda t: t.pin_memory().to(dev, non_blocking=True) if dev.type == "cuda" else t)  # noqa: E731
    positions = move(qp)[None]
    return PackedBatch(
        cache, kernel, varlen, positions, torch.ones_like(positions, dtype=torch.bool), move(ends - 1),
        move(write), move(rows), move(kp), move(k_owner), move(q_owner), move(cu_q), move(cu_k),
        max(new), max(c + n for c, n in zip(cached, new, strict=True)))
