"""Continuous (in-flight) batching: sequences join and leave the running batch at every decode step.

One :class:`Scheduler` step does, in order:

1. **Admit** waiting sequences while a slot is free, the KV budget holds their whole context
   plus one position, and less than two steps of prefill are pending (FIFO; a static scheduler
   admits only into an empty batch). New images are vision-encoded together.
2. **Prefill** admitted sequences, at most ``prefill_tokens`` positions per step, so a long Gundam
   prompt is chunked over several steps instead of stalling the running batch.
3. **Decode** one token for every sequence whose context is in the cache. A sequence that needs a
   new KV block when none is left preempts the newest sequence (its blocks are freed; it goes back
   to the front of the queue and is later prefilled again over prompt + generated tokens, which
   gives the same next token as decoding on would have).

Each token choice is greedy after the windowed n-gram ban and costs one host sync (the chosen ids).
The model is used through a small interface (``encode_images``, ``token_embeddings``,
``forward_logits``, ``config.decoder``), so any checkpoint family with that interface plugs in.

Options for CUDA (each runs on CPU too, where the tests check that it changes no token):
``cuda_graphs`` replays the decode step from CUDA graphs (:mod:`.graphs`), ``prefill_attention``
packs prefill chunks without padding for flash_attn's varlen kernel or FlexAttention
(:mod:`.attention`), and ``overlap`` encodes new pages on a side stream while the batch decodes
(:mod:`.staging`).
"""

from __future__ import annotations

import collections
import logging
import os
import time
from typing import Any

import torch

from deepocr_cli.engine.attention import PREFILL_KERNELS, VarlenFn, flash_attn_varlen, pack
from deepocr_cli.engine.graphs import DecodeGraphs
from deepocr_cli.engine.kv_cache import (
    DEFAULT_BLOCK_SIZE,
    FLASH_BLOCK_SIZE,
    PagedKVCache,
    flash_attn_with_kvcache,
)
from deepocr_cli.engine.metrics import EngineMetrics
from deepocr_cli.engine.ngram import NGramBlocker
from deepocr_cli.engine.sequence import EngineRequest, FinishedSequence, Sequence
from deepocr_cli.engine.staging import VisionStager
from deepocr_cli.errors import OutOfResourcesError

log = logging.getLogger(__name__)

#: Share of free device memory the engine plans to use (KV cache plus step workspace).
GPU_MEMORY_FRACTION = 0.9
#: Share of physical memory the host KV pool may grow to when no budget is given.
HOST_MEMORY_FRACTION = 0.25


def kv_budget_bytes(model: Any, slots: int, prefill_tokens: int, budget: int | None = None,
                    graphs: bool = False) -> int:
    """KV-cache bytes for ``model``: ``budget`` if given, else derived from free memory.

    On CUDA: (free * GPU_MEMORY_FRACTION - workspace) * layers / (layers + 2), where the workspace
    is the logits of a full decode step (3 * slots * vocab * 4 bytes) plus prefill activations, and
    the layers/(layers+2) factor leaves room for one layer's K/V gathered from the pages (and a
    copy of it) when SDPA reads them. With ``graphs`` (CUDA graphs) one more logits buffer and the
    graphs' pool (about one decode step's activations) are set aside: slots * vocab * 8 bytes more. A device OOM later still only preempts (see ``_shrink``).
    On the host: HOST_MEMORY_FRACTION of physical memory (the pool only grows as it is used).
    """
    if budget is not None:
        return int(budget)
    dec = model.config.decoder
    if model.device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(model.device)
        element = torch.tensor([], dtype=model.dtype).element_size()
        per_token = dec.hidden_size * (8 + 2 * dec.num_experts_per_tok) + 3 * dec.intermediate_size
        workspace = (5 if graphs else 3) * slots * dec.vocab_size * 4 + prefill_tokens * per_token * element
        usable = max(0, int(free * GPU_MEMORY_FRACTION) - workspace)
        return usable * dec.num_hidden_layers // (dec.num_hidden_layers + 2)
    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        physical = 8 << 30
    return int(physical * HOST_MEMORY_FRACTION)


class Scheduler:
    """Continuous-batching greedy generation over a paged KV cache.

    Attributes:
        slots: most sequences decoding at once.
        metrics: counters (see :class:`EngineMetrics`).
        cache: the paged KV cache.
    """

    def __init__(
        self,
        model: Any,
        *,
        image_token_id: int,
        eos_token_id: int,
        slots: int = 8,
        kv_budget: int | None = None,
        block_size: int | None = None,
        prefill_tokens: int | None = None,
        ngram: NGramBlocker | None = None,
        ignore_eos: bool = False,
        static: bool = False,
        attention: str = "auto",
        prefill_attention: str = "auto",
        varlen: VarlenFn | None = None,
        cuda_graphs: bool | str = False,
        overlap: bool = False,
    ) -> None:
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        if prefill_attention not in PREFILL_KERNELS:
            raise ValueError(f"prefill_attention must be one of {', '.join(PREFILL_KERNELS)}, got {prefill_attention!r}")
        self.model = model
        self.image_token_id, self.eos_token_id = image_token_id, eos_token_id
        self.slots, self.ngram, self.ignore_eos, self.static = slots, ngram, ignore_eos, static
        dec = model.config.decoder
        cuda = model.device.type == "cuda"
        half = model.dtype in (torch.bfloat16, torch.float16)
        self.use_flash = attention in ("auto", "flash") and cuda and half and flash_attn_with_kvcache() is not None
        if attention == "flash" and not self.use_flash:
            raise ValueError("attention='flash' needs CUDA, bf16/fp16 and the flash_attn package")
        # Packed prefill: flash_attn's varlen kernel (or a stand-in of its signature), or FlexAttention.
        self.varlen = varlen or (flash_attn_varlen() if cuda and half and attention != "sdpa" else None)
        if prefill_attention == "auto":
            prefill_attention = "varlen" if self.varlen is not None else "sdpa"
        if prefill_attention == "varlen" and self.varlen is None:
            raise ValueError("prefill_attention='varlen' needs CUDA, bf16/fp16 and the flash_attn package")
        self.prefill_kernel = prefill_attention
        self.prefill_tokens = prefill_tokens or (8192 if cuda else 2048)
        self.max_positions = dec.max_position_embeddings
        self.cache = PagedKVCache(
            num_layers=dec.num_hidden_layers,
            kv_heads=dec.num_key_value_heads,
            head_dim=dec.head_dim,
            dtype=model.dtype,
            device=model.device,
            budget_bytes=kv_budget_bytes(model, slots, self.prefill_tokens, kv_budget, graphs=cuda_graphs is True),
            slots=slots,
            max_positions=self.max_positions,
            block_size=block_size or (FLASH_BLOCK_SIZE if self.use_flash else DEFAULT_BLOCK_SIZE),
        )
        self.graphs: DecodeGraphs | None = None
        if cuda_graphs and (cuda or cuda_graphs == "eager"):  # "eager": the padded static-buffer step, no capture
            self.graphs = DecodeGraphs(model, self.cache, slots, capture=cuda_graphs != "eager", flash=self.use_flash)
        elif cuda_graphs:
            log.warning("--cuda-graphs: no CUDA device (%s); decoding eagerly", model.device)
        self.overlap = overlap
        self.stager = VisionStager(model, image_token_id, overlap)
        self.metrics = EngineMetrics(slots=slots, kv_budget_bytes=self.cache.max_blocks * self.cache.block_bytes)
        self.waiting: collections.deque[Sequence] = collections.deque()
        self.running: list[Sequence] = []
        self._free_slots = list(range(slots - 1, -1, -1))
        self._arrivals = 0
        self._admissions = 0
        width = ngram.history if ngram is not None else 1
        self._history = torch.zeros(slots, width, dtype=torch.long, device=model.device)  # right-aligned tails

    # ----- public interface -----

    def add(self, request: EngineRequest) -> int:
        """Queue a request; returns its arrival number."""
        if not request.prompt_ids:
            raise ValueError("every prompt needs at least one token")
        limit = max(0, min(request.max_new_tokens, self.max_positions - len(request.prompt_ids)))
        seq = Sequence(self._arrivals, request, limit)
        self._arrivals += 1
        self.waiting.append(seq)
        return seq.index

    @property
    def has_work(self) -> bool:
        """Whether sequences are waiting or running."""
        return bool(self.waiting or self.running)

    def step(self) -> list[FinishedSequence]:
        """Admit, prefill (bounded), decode one token; returns the sequences that finished."""
        t0 = time.perf_counter()
        done: list[FinishedSequence] = []
        with torch.inference_mode():
            self._admit(done)
            ran = list(self.running)
            t1 = time.perf_counter()
            self.metrics.encode_s += t1 - t0
            phases = [(self._prefill, "prefill_s"), (self._decode, "decode_s")]
            # Overlap: decode the running batch while the new pages' encoding runs on the side stream.
            for phase, counter in reversed(phases) if self.overlap else phases:
                while True:
                    try:
                        phase(done)
                        break
                    except torch.OutOfMemoryError:  # activations did not fit next to the KV pool
                        self._shrink()
                t2 = time.perf_counter()
                setattr(self.metrics, counter, getattr(self.metrics, counter) + t2 - t1)
                t1 = t2
        elapsed = time.perf_counter() - t0
        share = elapsed / max(1, len(ran))
        for s in ran:
            s.seconds += share
        ran_ids = {s.index for s in ran}
        for f in done:
            f.seconds += share if f.index in ran_ids else 0.0
        self.metrics.kv_peak_bytes = self.cache.peak_blocks * self.cache.block_bytes
        self.metrics.finished += len(done)
        self.metrics.seconds += elapsed
        return done

    def run(self, requests: list[EngineRequest]) -> list[FinishedSequence]:
        """Generate for every request; results in request order."""
        first = self._arrivals
        for r in requests:
            self.add(r)
        out: dict[int, FinishedSequence] = {}
        while self.has_work:
            for f in self.step():
                out[f.index] = f
        return [out[first + i] for i in range(len(requests))]

    # ----- admission, preemption -----

    def _admit(self, done: list[FinishedSequence]) -> None:
        if self.static and self.running:
            return
        watermark = max(1, self.cache.max_blocks // 100)
        admitted: list[Sequence] = []
        # Admit no more than two steps of prefill ahead: bounds the encoder stall and the held embeddings.
        pending = sum(s.context - s.cached for s in self.running if s.embeds is not None)
        while self.waiting and self._free_slots and (self.static or pending < 2 * self.prefill_tokens):
            seq = self.waiting[0]
            need = seq.context + 1
            if seq.limit == 0 or not self.cache.fits(need):
                self.waiting.popleft()
                error = None if seq.limit == 0 else (
                    f"needs {need * self.cache.token_bytes} bytes of KV cache; the budget is "
                    f"{self.cache.max_blocks * self.cache.block_bytes}")
                done.append(self._finish(seq, eos=False, error=error))
                continue
            slot = self._free_slots[-1]
            if not self.cache.grow(slot, need):
                break
            if self.running and self.cache.free_blocks < watermark:
                self.cache.release(slot)  # leave room for the running sequences to grow
                break
            self._free_slots.pop()
            self.waiting.popleft()
            seq.slot, seq.admitted, seq.cached = slot, self._admissions, 0
            self._admissions += 1
            self.running.append(seq)
            admitted.append(seq)
            pending += seq.context
        if admitted:
            self.metrics.recomputed_tokens += self.stager.embed(admitted)

    def _preempt(self, seq: Sequence) -> None:
        self.cache.release(seq.slot)
        self._free_slots.append(seq.slot)
        self.running.remove(seq)
        seq.slot, seq.cached, seq.embeds = -1, 0, None
        self.stager.forget(seq)
        seq.preemptions += 1
        self.metrics.preemptions += 1
        self.waiting.appendleft(seq)
        log.debug("preempted sequence %d at %d generated tokens", seq.index, len(seq.generated))

    def _shrink(self) -> None:
        """After a device OOM: preempt the newest sequence and cap the KV budget at what is held now."""
        if self.model.device.type == "cuda":
            torch.cuda.empty_cache()
        if len(self.running) <= 1:
            raise OutOfResourcesError("out of memory with a single sequence; use a smaller mode or free GPU memory")
        self._preempt(max(self.running, key=lambda r: r.admitted))
        self.cache.max_blocks = max(1, self.cache.used_blocks)
        self.prefill_tokens = max(256, self.prefill_tokens // 2)
        log.warning("device out of memory: %d sequences kept, KV budget capped at %d blocks",
                    len(self.running), self.cache.max_blocks)

    def _finish(self, seq: Sequence, eos: bool, error: str | None = None) -> FinishedSequence:
        if seq.slot >= 0:
            self.cache.release(seq.slot)
            self._free_slots.append(seq.slot)
            self.running.remove(seq)
            seq.slot = -1
        seq.embeds = None
        self.stager.forget(seq)
        return FinishedSequence(
            seq.index, seq.request, seq.generated, eos, seq.first_top5 or [], seq.preemptions, seq.seconds, error
        )

    # ----- the two kinds of forward -----

    def _prefill(self, done: list[FinishedSequence]) -> None:
        budget = self.prefill_tokens
        rows: list[tuple[Sequence, int]] = []
        # With overlap, pages still encoding on the side stream wait for a later step while others decode.
        busy = self.overlap and any(s.decoding for s in self.running)
        for s in sorted(self.running, key=lambda s: s.admitted):
            if s.embeds is None or budget <= 0 or (busy and not self.stager.ready(s)):
                continue
            n = min(s.context - s.cached, budget)
            rows.append((s, n))
            budget -= n
        if not rows:
            return
        self.stager.wait([s for s, _ in rows])
        slots, cached, new = [s.slot for s, _ in rows], [s.cached for s, _ in rows], [n for _, n in rows]
        if self.prefill_kernel != "sdpa":  # packed: no padding
            packed = pack(self.cache, slots, cached, new, self.prefill_kernel, self.varlen)
            embeds = torch.cat([s.embeds[s.cached : s.cached + n] for s, n in rows])[None]  # [1, total, H]
            logits = self.model.forward_logits(embeds, packed.positions, packed.valid, packed, last_index=packed.last)
        else:
            paged = self.cache.batch(slots, cached, new)
            hidden = rows[0][0].embeds.shape[-1]
            embeds = torch.zeros(len(rows), paged.width, hidden, dtype=self.model.dtype, device=self.model.device)
            for i, (s, n) in enumerate(rows):
                embeds[i, :n] = s.embeds[s.cached : s.cached + n]
            last = torch.tensor([n - 1 for _, n in rows], device=self.model.device)
            logits = self.model.forward_logits(embeds, paged.positions, paged.valid, paged, last_index=last)
        complete = []
        for i, (s, n) in enumerate(rows):
            s.cached += n
            self.metrics.prefill_tokens += n
            if s.cached == s.context:
                s.embeds = None
                complete.append(i)
        if complete:
            self._choose([rows[i][0] for i in complete], logits[complete], done, fresh=True)

    def _decode(self, done: list[FinishedSequence]) -> None:
        for s in sorted((s for s in self.running if s.decoding), key=lambda s: s.admitted):
            while s.slot >= 0 and not self.cache.grow(s.slot, s.cached + 1):
                victim = max(self.running, key=lambda r: r.admitted)
                if victim is s and len(self.running) == 1:
                    error = f"the KV budget holds no more than {s.cached} positions"
                    done.append(self._finish(s, eos=False, error=error))
                    break
                self._preempt(victim)
        rows = [s for s in self.running if s.decoding]
        if not rows:
            return
        device = self.model.device
        slots, cached = [s.slot for s in rows], [s.cached for s in rows]
        tokens = torch.tensor([s.generated[-1] for s in rows], dtype=torch.long).to(device, non_blocking=True)
        logits = self.graphs.step(tokens, slots, cached) if self.graphs is not None else None
        if logits is None:
            self.graphs = None  # off, or a capture failed (warned once): eager from now on
            paged = self.cache.batch(slots, cached, [1] * len(rows), use_flash=self.use_flash)
            embeds = self.model.token_embeddings(tokens[:, None])  # [B, 1, H]
            zero = torch.zeros(len(rows), dtype=torch.long, device=device)
            logits = self.model.forward_logits(embeds, paged.positions, paged.valid, paged, last_index=zero)
        for s in rows:
            s.cached += 1
        m = self.metrics
        m.decode_steps += 1
        m.sequence_steps += len(rows)
        if self.waiting:
            m.steady_steps += 1
            m.steady_sequence_steps += len(rows)
        self._choose(rows, logits, done, fresh=False)

    def _choose(self, rows: list[Sequence], logits: torch.Tensor, done: list[FinishedSequence], fresh: bool) -> None:
        """Greedy next token for each row (after the n-gram ban); finish rows that stop."""
        device = logits.device
        slot_t = torch.tensor([s.slot for s in rows], dtype=torch.long).to(device, non_blocking=True)
        firsts = [i for i, s in enumerate(rows) if fresh and s.first_top5 is None]
        if firsts:
            vals, ids = logits[firsts].topk(min(5, logits.shape[-1]), dim=-1)
            for i, r_ids, r_vals in zip(firsts, ids.tolist(), vals.tolist(), strict=True):
                rows[i].first_top5 = list(zip(r_ids, r_vals, strict=True))
        if self.ngram is not None:
            width = self._history.shape[1]
            if fresh:  # (re)load the tails of sequences that come out of a prefill
                tails = torch.zeros(len(rows), width, dtype=torch.long)
                for i, s in enumerate(rows):
                    tail = s.generated[-width:]
                    if tail:
                        tails[i, width - len(tail) :] = torch.tensor(tail)
                self._history.index_copy_(0, slot_t, tails.to(device))
            history = self._history.index_select(0, slot_t)  # [B, W]
            lengths = torch.tensor([len(s.generated) for s in rows]).to(device, non_blocking=True)
            windows = None
            if any(s.request.ngram_window is not None for s in rows):
                own = [min(s.request.ngram_window or self.ngram.window, self.ngram.window) for s in rows]
                windows = torch.tensor(own).to(device, non_blocking=True)
            self.ngram.apply(logits, history, lengths, windows)
        chosen = logits.argmax(dim=-1)  # [B]
        if self.ngram is not None:
            self._history.index_copy_(0, slot_t, torch.cat([history[:, 1:], chosen[:, None]], dim=1))
        for s, token in zip(rows, chosen.tolist(), strict=True):  # the one host sync
            s.generated.append(token)
            self.metrics.generated_tokens += 1
            if token == self.eos_token_id and not self.ignore_eos:
                done.append(self._finish(s, eos=True))
            elif len(s.generated) >= s.limit:
                done.append(self._finish(s, eos=False))
