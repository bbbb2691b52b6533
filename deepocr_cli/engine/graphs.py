"""Decode steps from static buffers at a few padded batch sizes, captured as CUDA graphs on CUDA (``--cuda-graphs``).

A decode step launches a few hundred small kernels (per layer: norms, projections, RoPE, the cache
write, attention, the MoE router and experts); at small and medium batch sizes the GPU waits on the
host launching them. A CUDA graph records the launches of one step once and replays them with one
call. A graph replays fixed shapes at fixed addresses, so:

* the running batch of B rows is padded up to the next captured size G (powers of two up to the
  slot count, and the slot count itself); padding rows decode token 0 at position 0, write their
  K/V to one scratch block the cache sets aside, and attend only to it (their logits are dropped);
* every input lives in a static buffer that is refilled before each replay: token ids, RoPE
  positions, cache write rows and either the block table plus cached lengths (flash_attn's paged
  kernel) or, for SDPA, the gathered key rows and mask; SDPA's key span is rounded up to a power of
  two of blocks, so one graph serves many lengths (key (G, span));
* the MoE layers run capture-safe while capturing (grouped GEMM with device-side offsets, else every
  expert on every token: no host read of per-expert counts; see ``DeepOcrMoE._path``).

Graphs are captured lazily, the first time a (G, span) is needed, from a memory pool they share.
Off CUDA, or when a capture fails, the scheduler decodes eagerly after a one-line warning. The same
padded step without capture ("graph-shaped", ``cuda_graphs="eager"``) runs on any device: the tests
check on CPU that it chooses the same tokens as the normal step at every batch size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from deepocr_cli.engine.kv_cache import PagedBatch, PagedKVCache

log = logging.getLogger(__name__)


def graph_sizes(slots: int) -> list[int]:
    """Padded batch sizes: 1, 2, 4, ... below ``slots``, then ``slots`` itself."""
    sizes, g = [], 1
    while g < slots:
        sizes.append(g)
        g *= 2
    return [*sizes, slots]


@dataclass
class _Static:
    """Input buffers of padded decode steps for one key span, ``size`` rows (graphs use the first G)."""

    tokens: torch.Tensor  # [S] long
    positions: torch.Tensor  # [S, 1] long
    valid: torch.Tensor  # [S, 1] bool, all True
    write_slots: torch.Tensor  # [S] long, flat cache row each new K/V goes to
    last: torch.Tensor  # [S] long zeros (the one new position per row)
    gather: torch.Tensor | None  # SDPA: [S, T] long flat cache row of every key position
    mask: torch.Tensor | None  # SDPA: [S, 1, 1, T] bool
    table: torch.Tensor | None  # flash: [S, max blocks per sequence] int32
    seqlens: torch.Tensor | None  # flash: [S] int32 cached positions before this step


class DecodeGraphs:
    """Padded decode steps from static buffers; with ``capture`` (CUDA only), recorded once and replayed.

    Attributes:
        sizes: the padded batch sizes.
        capture: record CUDA graphs (False: run the same padded step eagerly).
        captured: graphs recorded so far; replays: steps served by a replay; failed: a capture failed.
        steps: padded steps run; padding_rows: padding rows they carried.
    """

    def __init__(self, model: Any, cache: PagedKVCache, slots: int, *, capture: bool, flash: bool) -> None:
        if capture and cache.device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        self.model, self.cache, self.capture, self.flash = model, cache, capture, flash
        self.sizes = graph_sizes(slots)
        self.scratch_row = cache.reserve_block() * cache.block_size
        self._static: dict[int, _Static] = {}
        # One logits buffer for every graph: each graph copies its result here, so the graphs' own
        # outputs stay in the shared pool (reused by the next capture) instead of one [G, V] each.
        self._logits: torch.Tensor | None = None
        self._graphs: dict[tuple[int, int], tuple[Any, torch.Tensor]] = {}
        self._pool: Any = None
        self.captured = self.replays = self.steps = self.padding_rows = 0
        self.failed = False

    def size_for(self, rows: int) -> int:
        """The smallest padded size holding ``rows`` rows."""
        return next(g for g in self.sizes if g >= rows)

    def _span(self, cached: list[int]) -> int:
        """Key span in blocks for SDPA (next power of two, capped), 0 for flash (its table is full width)."""
        if self.flash:
            return 0
        need, span = self.cache.blocks_for(max(cached) + 1), 1
        while span < need:
            span *= 2
        return min(span, self.cache.max_blocks_per_seq)

    def _buffers(self, span: int) -> _Static:
        if span not in self._static:
            size, dev, bs = self.sizes[-1], self.cache.device, self.cache.block_size
            long = {"dtype": torch.long, "device": dev}
            gather = mask = table = seqlens = None
            if self.flash:
                table = torch.zeros(size, self.cache.max_blocks_per_seq, dtype=torch.int32, device=dev)
                seqlens = torch.zeros(size, dtype=torch.int32, device=dev)
            else:
                gather = torch.zeros(size, span * bs, **long)
                mask = torch.zeros(size, 1, 1, span * bs, dtype=torch.bool, device=dev)
            self._static[span] = _Static(
                torch.zeros(size, **long), torch.zeros(size, 1, **long),
                torch.ones(size, 1, dtype=torch.bool, device=dev), torch.zeros(size, **long),
                torch.zeros(size, **long), gather, mask, table, seqlens)
        return self._static[span]

    def _fill(self, buf: _Static, rows: int, tokens: torch.Tensor, paged: PagedBatch) -> None:
        """Real rows from ``paged`` (the normal step's metadata), padding rows pointing at the scratch block."""
        scratch = self.scratch_row
        buf.tokens[:rows].copy_(tokens)
        buf.tokens[rows:].zero_()
        buf.positions[:rows].copy_(paged.positions)
        buf.positions[rows:].zero_()
        buf.write_slots[:rows].copy_(paged.write_slots)
        buf.write_slots[rows:].fill_(scratch)
        if buf.table is not None and buf.seqlens is not None and paged.block_table is not None:
            width = paged.block_table.shape[1]
            buf.table.fill_(scratch // self.cache.block_size)
            buf.table[:rows, :width].copy_(paged.block_table)
            buf.seqlens[:rows].copy_(paged.seqlens)
            buf.seqlens[rows:].zero_()
            return
        assert buf.gather is not None and buf.mask is not None and paged.gather is not None
        width = paged.gather.shape[1]
        buf.gather.fill_(scratch)
        buf.gather[:rows, :width].copy_(paged.gather)
        buf.mask.zero_()
        buf.mask[:rows, :, :, :width].copy_(paged.mask)
        buf.mask[rows:, :, :, 0] = True  # a padding row sees its own scratch key: no empty softmax

    def _forward(self, buf: _Static, g: int) -> torch.Tensor:
        """The padded step over the first ``g`` rows of the static buffers: logits [g, V]."""
        part = (lambda t: None if t is None else t[:g])  # noqa: E731 - a one-line slicer
        paged = PagedBatch(self.cache, buf.positions[:g], buf.valid[:g], None, buf.write_slots[:g],
                           part(buf.gather), part(buf.mask), part(buf.table), part(buf.seqlens), g, 1)
        embeds = self.model.token_embeddings(buf.tokens[:g, None])  # [g, 1, H]
        logits = self.model.forward_logits(embeds, buf.positions[:g], buf.valid[:g], paged, last_index=buf.last[:g])
        if self._logits is None:
            self._logits = torch.empty(self.sizes[-1], logits.shape[-1], dtype=logits.dtype, device=logits.device)
        return self._logits[:g].copy_(logits)

    def step(self, tokens: torch.Tensor, slots: list[int], cached: list[int]) -> torch.Tensor | None:
        """Logits [B, V] of one decode step for ``tokens`` [B] on ``slots`` after ``cached`` positions.

        Returns None when a capture failed (the caller then decodes eagerly, as from now on).
        """
        rows = len(slots)
        g, span = self.size_for(rows), self._span(cached)
        paged = self.cache.batch(slots, cached, [1] * rows, use_flash=self.flash)
        buf = self._buffers(span)
        self._fill(buf, rows, tokens, paged)
        self.steps += 1
        self.padding_rows += g - rows
        if not self.capture:
            return self._forward(buf, g)[:rows]
        key = (g, span)
        if key not in self._graphs and not self._record(key, buf, g):
            return None
        graph, out = self._graphs[key]
        graph.replay()
        self.replays += 1
        return out[:rows]

    def _record(self, key: tuple[int, int], buf: _Static, g: int) -> bool:
        """Warm up, then capture the padded step for ``key``; False (after one warning) if capture fails.

        A first failure is retried once with the dense MoE dispatch (in case grouped GEMM is not
        capture-safe on this build); a second one means eager decoding from now on.
        """
        for attempt in range(2):
            try:
                return self._capture(key, buf, g)
            except torch.OutOfMemoryError:
                raise
            except Exception as exc:  # noqa: BLE001 - any capture failure means eager decoding, never a failed run
                moes = [m for m in self.model.modules() if hasattr(m, "capture_path")]
                if attempt == 0 and moes and any(m.capture_path != "dense" for m in moes):
                    log.debug("capture failed (%s); retrying with the dense MoE dispatch", exc)
                    for m in moes:
                        m.capture_path = "dense"
                    continue
                self.capture, self.failed = False, True
                log.warning("--cuda-graphs: capture failed (%s: %s); decoding eagerly",
                            type(exc).__name__, str(exc).splitlines()[0][:120] if str(exc) else "")
        return False

    def _capture(self, key: tuple[int, int], buf: _Static, g: int) -> bool:  # pragma: no cover - CUDA only
        """Warm up on a side stream (cuBLAS workspaces, lazy kernels), then record the padded step."""
        dev = self.cache.device
        side = torch.cuda.Stream(dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(side):
            self._forward(buf, g)  # writes the same K/V the step writes: harmless to repeat
        torch.cuda.current_stream(dev).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: the page-preparation threads may pin host memory (a CUDA call) meanwhile
        with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
            out = self._forward(buf, g)
        self._pool = graph.pool()
        self._graphs[key] = (graph, out)
        self.captured += 1
        log.debug("captured decode graph for %d rows, span %d blocks", *key)
        return True
