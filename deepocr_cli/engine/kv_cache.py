"""Paged KV cache: fixed-size blocks handed out to sequences from a byte budget, and the attention over them.

Memory is never reserved for ``max_new_tokens``: a sequence holds ``ceil(tokens / block_size)`` blocks
and gets one more when it crosses a block boundary. The pool has ``budget // block_bytes`` blocks with

    bytes per token = 2 (K and V) * layers * kv_heads * head_dim * dtype bytes
    block_bytes     = bytes per token * block_size

On CUDA the whole pool is allocated up front (no fragmentation, no reallocation); on the host it
grows by doubling up to the budget, so a large budget costs nothing until it is used. When the pool
is exhausted :meth:`PagedKVCache.grow` says so and the scheduler preempts a sequence.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

#: Positions per block. flash_attn's paged kernels need a multiple of 256; SDPA any size.
DEFAULT_BLOCK_SIZE = 16
FLASH_BLOCK_SIZE = 256


def flash_attn_with_kvcache():  # pragma: no cover - only where flash_attn is installed (CUDA)
    """flash_attn's paged decode kernel, or None when the package is not importable."""
    try:
        from flash_attn import flash_attn_with_kvcache as fn
    except Exception:  # ImportError, or a broken build raising anything at import
        return None
    return fn


class PagedKVCache:
    """Block pool for all layers plus one block table per sequence slot.

    Attributes:
        block_size: positions per block.
        max_blocks: blocks the budget allows.
        block_bytes: bytes one block costs over all layers (K and V).
        tables: [slots, max_blocks_per_seq] int32 block ids per slot (host tensor).
        peak_blocks: most blocks ever in use at once.
    """

    def __init__(
        self,
        *,
        num_layers: int,
        kv_heads: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device,
        budget_bytes: int,
        slots: int,
        max_positions: int,
        block_size: int = DEFAULT_BLOCK_SIZE,
        preallocate: bool | None = None,
    ) -> None:
        self.num_layers, self.kv_heads, self.head_dim = num_layers, kv_heads, head_dim
        self.dtype, self.device, self.block_size = dtype, torch.device(device), block_size
        element = torch.tensor([], dtype=dtype).element_size()
        self.token_bytes = 2 * num_layers * kv_heads * head_dim * element
        self.block_bytes = self.token_bytes * block_size
        self.max_blocks_per_seq = math.ceil(max_positions / block_size)
        # More than every slot at full context can never be used: no point holding it.
        self.max_blocks = int(min(budget_bytes // self.block_bytes, slots * self.max_blocks_per_seq))
        self.tables = torch.zeros(slots, self.max_blocks_per_seq, dtype=torch.int32)
        self._owned: list[list[int]] = [[] for _ in range(slots)]
        self._used = 0
        self.peak_blocks = 0
        prealloc = self.device.type == "cuda" if preallocate is None else preallocate
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self._capacity = 0
        self._free: list[int] = []
        self._resize(self.max_blocks if prealloc else min(self.max_blocks, 64))

    # ----- block accounting -----

    @property
    def used_blocks(self) -> int:
        """Blocks held by sequences now."""
        return self._used

    @property
    def free_blocks(self) -> int:
        """Blocks still available within the budget."""
        return self.max_blocks - self.used_blocks

    def blocks_for(self, tokens: int) -> int:
        """Blocks needed to hold ``tokens`` positions."""
        return math.ceil(tokens / self.block_size)

    def fits(self, tokens: int) -> bool:
        """Whether one sequence of ``tokens`` positions could ever fit (the whole budget to itself)."""
        return self.blocks_for(tokens) <= min(self.max_blocks, self.max_blocks_per_seq)

    def grow(self, slot: int, tokens: int) -> bool:
        """Give ``slot`` enough blocks for ``tokens`` positions; False (nothing changed) if the budget is spent."""
        owned = self._owned[slot]
        need = self.blocks_for(tokens) - len(owned)
        if need <= 0:
            return True
        if need > self.free_blocks or len(owned) + need > self.max_blocks_per_seq:
            return False
        if need > len(self._free):
            self._resize(min(self.max_blocks, max(2 * self._capacity, self._capacity + need)))
        for _ in range(need):
            block = self._free.pop()
            self.tables[slot, len(owned)] = block
            owned.append(block)
        self._used += need
        self.peak_blocks = max(self.peak_blocks, self._used)
        return True

    def reserve_block(self) -> int:
        """Take one block out of the budget for good (the scratch block padded decode rows write to)."""
        if self.free_blocks < 1:
            raise ValueError("the KV budget has no block to spare")
        if not self._free:
            self._resize(min(self.max_blocks, self._capacity + 1))
        self._used += 1  # held by no slot, never released
        self.peak_blocks = max(self.peak_blocks, self._used)
        return self._free.pop()

    def release(self, slot: int) -> None:
        """Return the slot's blocks to the pool."""
        self._free.extend(reversed(self._owned[slot]))
        self._used -= len(self._owned[slot])
        self._owned[slot] = []

    def _resize(self, blocks: int) -> None:
        """(Re)allocate the pool for ``blocks`` blocks, keeping the contents of the existing ones."""
        if blocks <= self._capacity:
            return
        rows = blocks * self.block_size
        shape = (rows, self.kv_heads, self.head_dim)
        for store in (self.keys, self.values):
            for layer in range(self.num_layers):
                new = torch.zeros(shape, dtype=self.dtype, device=self.device)
                if layer < len(store):
                    new[: store[layer].shape[0]] = store[layer]
                    store[layer] = new
                else:
                    store.append(new)
        self._free.extend(range(blocks - 1, self._capacity - 1, -1))
        self._capacity = blocks

    # ----- one forward over a batch of rows -----

    def batch(self, slots: list[int], cached: list[int], new: list[int], use_flash: bool = False) -> PagedBatch:
        """Attention metadata for rows that each append ``new[i]`` positions after ``cached[i]`` ones.

        The caller must have grown every slot to ``cached[i] + new[i]`` positions.
        """
        dev = self.device
        rows = len(slots)
        width = max(new)
        total = [c + n for c, n in zip(cached, new, strict=True)]
        n_blocks = self.blocks_for(max(total))
        slot_t = torch.tensor(slots, dtype=torch.long)
        table = self.tables.index_select(0, slot_t)[:, :n_blocks].contiguous()  # [B, nb] host
        if dev.type == "cuda":
            table = table.pin_memory()
        table = table.to(dev, non_blocking=True)
        cached_t = torch.tensor(cached, dtype=torch.long).to(dev, non_blocking=True)  # [B]
        new_t = torch.tensor(new, dtype=torch.long).to(dev, non_blocking=True)  # [B]
        j = torch.arange(width, device=dev)  # [N]
        positions = cached_t[:, None] + j[None, :]  # [B, N] RoPE positions of the new tokens
        valid = j[None, :] < new_t[:, None]  # [B, N] right padding is False
        bs = self.block_size
        write_slots = table.long().gather(1, positions.clamp(max=n_blocks * bs - 1) // bs) * bs + positions % bs
        # Rows of the flattened [B*N] new tokens that are real, built on the host: a boolean-mask
        # select on the device would cost a host sync per layer. None when every token is real (decode).
        src = None
        if any(n != width for n in new):
            src = torch.tensor([i * width + t for i, n in enumerate(new) for t in range(n)]).to(dev, non_blocking=True)
        write_slots = write_slots.reshape(-1) if src is None else write_slots.reshape(-1).index_select(0, src)
        flash = use_flash and width == 1 and bs % FLASH_BLOCK_SIZE == 0 and dev.type == "cuda"
        if flash:
            return PagedBatch(self, positions, valid, src, write_slots,
                              None, None, table, cached_t.to(torch.int32), rows, width)
        span = max(total)
        p = torch.arange(span, device=dev)  # [T] key positions
        gather = table.long()[:, p // bs] * bs + p % bs  # [B, T] flat row of each key position
        last = (cached_t + new_t - 1)[:, None]  # [B, 1]
        q_pos = torch.minimum(positions, last)  # padded queries copy the last real one (no empty row)
        mask = (p[None, None, :] <= q_pos[:, :, None])[:, None]  # [B, 1, N, T]
        return PagedBatch(self, positions, valid, src, write_slots,
                          gather, mask, None, None, rows, width)


@dataclass
class PagedBatch:
    """What one decoder forward needs to read and extend the paged cache (built by :meth:`PagedKVCache.batch`).

    Attributes:
        positions: [B, N] RoPE positions of the new tokens.
        valid: [B, N] True for real new tokens (rows are right-padded).
    """

    cache: PagedKVCache
    positions: torch.Tensor
    valid: torch.Tensor
    src: torch.Tensor | None
    write_slots: torch.Tensor
    gather: torch.Tensor | None
    mask: torch.Tensor | None
    block_table: torch.Tensor | None
    seqlens: torch.Tensor | None
    rows: int
    width: int

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Store k, v [B, h, N, D] of the new tokens and attend q [B, h, N, D] over each row's whole prefix."""
        cache = self.cache
        b, h, n, d = k.shape
        if self.block_table is not None:  # pragma: no cover - CUDA + flash_attn only
            return self._flash(layer, q, k, v)
        k_new = k.transpose(1, 2).reshape(b * n, h, d)
        v_new = v.transpose(1, 2).reshape(b * n, h, d)
        if self.src is not None:
            k_new, v_new = k_new.index_select(0, self.src), v_new.index_select(0, self.src)
        cache.keys[layer].index_copy_(0, self.write_slots, k_new.to(cache.dtype))
        cache.values[layer].index_copy_(0, self.write_slots, v_new.to(cache.dtype))
        keys = cache.keys[layer][self.gather].transpose(1, 2)  # [B, h, T, D]
        values = cache.values[layer][self.gather].transpose(1, 2)
        return F.scaled_dot_product_attention(q, keys.to(q.dtype), values.to(q.dtype), attn_mask=self.mask)

    def _flash(self, layer: int, q, k, v):  # pragma: no cover - CUDA + flash_attn only
        cache = self.cache
        fn = flash_attn_with_kvcache()
        shape = (-1, cache.block_size, cache.kv_heads, cache.head_dim)
        out = fn(
            q.transpose(1, 2),  # [B, 1, h, D]
            cache.keys[layer].view(shape),
            cache.values[layer].view(shape),
            k=k.transpose(1, 2),
            v=v.transpose(1, 2),
            cache_seqlens=self.seqlens,
            block_table=self.block_table,
            causal=True,
        )  # [B, 1, h, D]
        return out.transpose(1, 2)
