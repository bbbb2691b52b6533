"""The CUDA fast paths, as far as CPU can check them: each chooses the same tokens as the plain engine.

* the graph-shaped decode step (static buffers, batch padded to a captured size, scratch rows) runs
  eagerly here; capture itself needs CUDA (skipped here with the reason);
* packed prefill through FlexAttention (eager on CPU) and through a varlen kernel: our packing is
  checked with ``sdpa_varlen``, an SDPA implementation of flash_attn_varlen_func's signature;
* vision encoding on a side stream and pinned pixels are no-ops on CPU that keep every token.
"""

from __future__ import annotations

import logging

import pytest
import torch
from engine_helpers import lined_page

from deepocr_cli import prompts
from deepocr_cli.engine import load_engine
from deepocr_cli.engine.attention import pack, sdpa_varlen
from deepocr_cli.engine.graphs import graph_sizes
from deepocr_cli.engine.kv_cache import PagedKVCache
from deepocr_cli.model import NGramConfig
from deepocr_cli.model.image_processing import pinned
from deepocr_cli.planning.modes import Mode

NGRAM = NGramConfig(size=3, window=12)
MODES = [Mode.TINY, Mode.SMALL, Mode.BASE, Mode.GUNDAM, Mode.TINY, Mode.SMALL, Mode.TINY]
CAPS = [9, 30, 4, 22, 15, 1, 27]


@pytest.fixture(scope="module")
def requests(engine):
    reqs = []
    for i, (mode, cap) in enumerate(zip(MODES, CAPS, strict=True)):
        req = engine.prepare(lined_page(420 + 50 * i, 690 - 40 * i, str(i)), mode, prompts.MARKDOWN, tag=i)
        req.max_new_tokens = cap
        reqs.append(req)
    return reqs


@pytest.fixture(scope="module")
def reference(engine, requests):
    """Plain engine: padded SDPA prefill, eager decode, in line encoding; 3 slots."""
    return [r.token_ids for r in engine.generate(requests, batch_size=3, ngram=NGRAM, prefill_attention="sdpa")]


def _tokens(engine, requests, slots, **options):
    sched = engine.scheduler(slots, NGRAM, **options)
    done = sched.run([engine.engine_request(r, 8192) for r in requests])
    return [d.token_ids for d in done], sched


# ----- CUDA graphs: the graph-shaped step -----


def test_graph_sizes_are_powers_of_two_then_the_slot_count():
    assert graph_sizes(1) == [1]
    assert graph_sizes(8) == [1, 2, 4, 8]
    assert graph_sizes(6) == [1, 2, 4, 6]


@pytest.mark.parametrize("slots", [1, 5, 8])
def test_graph_shaped_decode_chooses_the_same_tokens_at_every_batch_size(engine, requests, reference, slots):
    got, sched = _tokens(engine, requests, slots, cuda_graphs="eager", prefill_attention="sdpa")
    assert got == reference
    graphs = sched.graphs
    assert graphs is not None and not graphs.capture and graphs.replays == 0
    assert graphs.steps > 0
    if slots > 1:  # e.g. 3 running rows pad to 4 (sizes 1, 2, 4, 5 and 1, 2, 4, 8)
        assert graphs.padding_rows > 0


def test_graph_shaped_logits_equal_the_normal_step_for_each_row_count(engine, requests):
    """Same cache state, same rows: the padded static-buffer step and the normal step give equal logits."""
    sched = engine.scheduler(6, NGRAM, cuda_graphs="eager", prefill_attention="sdpa")
    for r in requests[:6]:
        sched.add(engine.engine_request(r, 10_000))
    while sched.waiting or any(not s.decoding for s in sched.running):
        sched.step()
    rows = sorted(sched.running, key=lambda s: s.admitted)
    assert sched.graphs is not None
    for b in range(1, len(rows) + 1):
        part = rows[:b]
        slots, cached = [s.slot for s in part], [s.cached for s in part]
        tokens = torch.tensor([s.generated[-1] for s in part])
        with torch.inference_mode():
            shaped = sched.graphs.step(tokens, slots, cached).clone()
            paged = sched.cache.batch(slots, cached, [1] * b)
            embeds = engine.model.token_embeddings(tokens[:, None])
            plain = engine.model.forward_logits(embeds, paged.positions, paged.valid, paged,
                                                last_index=torch.zeros(b, dtype=torch.long))
        assert shaped.shape == plain.shape
        torch.testing.assert_close(shaped, plain, rtol=1e-5, atol=1e-5)
        assert torch.equal(shaped.argmax(-1), plain.argmax(-1))


def test_graph_shaped_step_with_the_capture_safe_dense_moe(engine, requests, reference):
    """The MoE path used while capturing on a GPU without grouped GEMM (every expert, no host reads)."""
    moes = [m for m in engine.model.modules() if hasattr(m, "_dense")]
    assert moes
    try:
        for m in moes:
            m.backend = "dense"
        got, _ = _tokens(engine, requests, 3, cuda_graphs="eager", prefill_attention="sdpa")
    finally:
        for m in moes:
            m.backend = "auto"
    assert got == reference


def test_cuda_graphs_off_cuda_warn_once_and_decode_eagerly(engine, requests, reference, caplog):
    with caplog.at_level(logging.WARNING, logger="deepocr_cli.engine.scheduler"):
        got, sched = _tokens(engine, requests, 3, cuda_graphs=True, prefill_attention="sdpa")
    assert sched.graphs is None
    assert [r.message for r in caplog.records if "--cuda-graphs" in r.message] == [
        "--cuda-graphs: no CUDA device (cpu); decoding eagerly"]
    assert got == reference


def test_a_failed_capture_retries_with_dense_moe_then_decodes_eagerly(engine, requests, reference, caplog,
                                                                      monkeypatch):
    """Capture itself needs CUDA; what happens when it fails is plain Python: check it with a failing capture."""
    from deepocr_cli.engine.graphs import DecodeGraphs

    attempts = []

    def failing_capture(self, key, buf, g):
        attempts.append([m.capture_path for m in engine.model.modules() if hasattr(m, "capture_path")][0])
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(DecodeGraphs, "_capture", failing_capture)
    sched = engine.scheduler(3, NGRAM, cuda_graphs="eager", prefill_attention="sdpa")
    assert sched.graphs is not None
    sched.graphs.capture = True  # as on CUDA
    try:
        with caplog.at_level(logging.WARNING, logger="deepocr_cli.engine.graphs"):
            got = [d.token_ids for d in sched.run([engine.engine_request(r, 8192) for r in requests])]
    finally:
        for m in engine.model.modules():
            if hasattr(m, "capture_path"):
                m.capture_path = None
    assert attempts == [None, "dense"]  # grouped-or-dense first, then dense, then give up
    assert sched.graphs is None
    assert [r.message.split(" (")[0] for r in caplog.records] == ["--cuda-graphs: capture failed"]
    assert got == reference


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graph capture needs a CUDA device")
def test_captured_graphs_replay_the_same_tokens(random_checkpoint, tmp_path):  # pragma: no cover - CUDA only
    eng = load_engine(str(random_checkpoint), device="cuda", dtype="bfloat16")
    reqs = [eng.prepare(lined_page(500, 700, str(i)), Mode.SMALL, tag=i) for i in range(5)]
    plain = [r.token_ids for r in eng.generate(reqs, max_new_tokens=20, batch_size=4, ngram=NGRAM)]
    sched = eng.scheduler(4, NGRAM, cuda_graphs=True)
    got = [d.token_ids for d in sched.run([eng.engine_request(r, 20) for r in reqs])]
    assert sched.graphs is not None and sched.graphs.captured > 0 and sched.graphs.replays > 0
    assert got == plain


# ----- packed prefill: FlexAttention, varlen -----


def _cache(blocks=64, block_size=4):
    return PagedKVCache(num_layers=1, kv_heads=2, head_dim=8, dtype=torch.float32, device=torch.device("cpu"),
                        budget_bytes=blocks * block_size * 2 * 2 * 8 * 4, slots=4, max_positions=64,
                        block_size=block_size)


def test_pack_metadata_cu_seqlens_max_seqlen_and_rows():
    cache = _cache()
    slots, cached, new = [2, 0, 3], [5, 0, 9], [3, 7, 1]
    for s, c, n in zip(slots, cached, new, strict=True):
        assert cache.grow(s, c + n)
    p = pack(cache, slots, cached, new, "varlen", sdpa_varlen)
    assert p.cu_seqlens_q.tolist() == [0, 3, 10, 11]
    assert p.cu_seqlens_k.tolist() == [0, 8, 15, 25]
    assert p.cu_seqlens_q.dtype == p.cu_seqlens_k.dtype == torch.int32
    assert (p.max_seqlen_q, p.max_seqlen_k) == (7, 10)
    assert p.positions.tolist() == [[5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 9]]
    assert p.last.tolist() == [2, 9, 10]
    # the new tokens go where the padded layout writes them, and keys are each prefix in order
    padded = cache.batch(slots, cached, new)
    assert p.write_slots.tolist() == padded.write_slots.tolist()
    for i in range(3):
        k0, k1 = p.cu_seqlens_k[i].item(), p.cu_seqlens_k[i + 1].item()
        assert p.key_rows[k0:k1].tolist() == padded.gather[i, : cached[i] + new[i]].tolist()


@pytest.mark.parametrize("kernel", ["varlen", "flex"])
def test_packed_attention_equals_the_padded_one_row_by_row(kernel):
    torch.manual_seed(0)
    slots, cached, new = [1, 3, 0], [6, 0, 11], [5, 9, 2]
    caches = [_cache(), _cache()]
    for cache in caches:
        for s, c, n in zip(slots, cached, new, strict=True):
            assert cache.grow(s, c + n)
        cache.keys[0].normal_(generator=torch.Generator().manual_seed(1))  # the same cached prefixes in both
        cache.values[0].normal_(generator=torch.Generator().manual_seed(2))
    width, h, d = max(new), 2, 8
    q, k, v = (torch.randn(3, h, width, d) for _ in range(3))
    padded = caches[0].batch(slots, cached, new)
    want = padded.attend(0, q, k, v)  # [3, h, width, D]
    packed = pack(caches[1], slots, cached, new, kernel, sdpa_varlen)
    flat = (lambda t: torch.cat([t[i, :, :n] for i, n in enumerate(new)], dim=1)[None])  # noqa: E731
    got = packed.attend(0, flat(q), flat(k), flat(v))  # [1, h, total, D]
    torch.testing.assert_close(got, flat(want), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(caches[1].keys[0], caches[0].keys[0])  # the same K/V were stored


def test_sdpa_varlen_aligns_causal_masking_to_the_end_of_the_keys():
    torch.manual_seed(3)
    q, k, v = torch.randn(2, 1, 4), torch.randn(5, 1, 4), torch.randn(5, 1, 4)
    out = sdpa_varlen(q, k, v, torch.tensor([0, 2]), torch.tensor([0, 5]), 2, 5, causal=True)
    for t, seen in ((0, 4), (1, 5)):  # query t of 2 over 5 keys sees keys 0 .. 5 - 2 + t
        weights = torch.softmax(k[:seen, 0] @ q[t, 0] / 2.0, dim=0)  # scale 1/sqrt(D), D = 4
        torch.testing.assert_close(out[t, 0], weights @ v[:seen, 0])


@pytest.mark.parametrize("kernel", ["flex", "varlen"])
def test_packed_prefill_chooses_the_same_tokens_as_padded_sdpa(engine, requests, reference, kernel):
    got, sched = _tokens(engine, requests, 3, prefill_attention=kernel, varlen=sdpa_varlen)
    assert sched.prefill_kernel == kernel
    assert got == reference


def test_packed_prefill_in_chunks_chooses_the_same_tokens(engine, requests, reference):
    """A small prefill budget splits prompts: chunks after a cached prefix, several sequences per pack."""
    got, sched = _tokens(engine, requests, 3, prefill_attention="flex", prefill_tokens=200)
    assert got == reference


def test_varlen_without_flash_attn_is_refused_on_cpu(engine):
    with pytest.raises(ValueError, match="flash_attn"):
        engine.scheduler(2, NGRAM, prefill_attention="varlen")
    with pytest.raises(ValueError, match="prefill_attention must be one of"):
        engine.scheduler(2, NGRAM, prefill_attention="xformers")


# ----- overlap and pinned memory: no-ops on CPU that keep every token -----


def test_overlap_keeps_every_token(engine, requests, reference):
    got, sched = _tokens(engine, requests, 3, overlap=True, prefill_attention="sdpa")
    assert sched.stager.stream is None  # no CUDA: no side stream
    assert got == reference


def test_all_fast_paths_together_keep_every_token(engine, requests, reference):
    got, _ = _tokens(engine, requests, 3, overlap=True, cuda_graphs="eager", prefill_attention="flex",
                     prefill_tokens=300)
    assert got == reference


def test_pinned_pixels_are_a_no_op_without_cuda_and_keep_every_token(engine, requests, reference):
    assert engine.pin_memory is False  # a CPU engine never pins
    again = [pinned(r.image) for r in requests]
    assert all(a is r.image for a, r in zip(again, requests, strict=True))
    try:
        engine.base.pin_memory = True  # on a CPU-only build pinned() hands the image back
        repeat = [engine.prepare(lined_page(420 + 50 * i, 690 - 40 * i, str(i)), m, prompts.MARKDOWN, tag=i)
                  for i, m in enumerate(MODES)]
    finally:
        engine.base.pin_memory = False
    for r, cap in zip(repeat, CAPS, strict=True):
        r.max_new_tokens = cap
    got = [r.token_ids for r in engine.generate(repeat, batch_size=3, ngram=NGRAM, prefill_attention="sdpa")]
    assert got == reference


def test_flash_layout_static_buffers_point_padding_rows_at_the_scratch_block():
    """The block-table form of the static buffers (flash_attn's paged kernel; the kernel itself needs CUDA)."""
    from deepocr_cli.engine.graphs import DecodeGraphs
    from deepocr_cli.engine.kv_cache import PagedBatch

    cache = PagedKVCache(num_layers=1, kv_heads=2, head_dim=8, dtype=torch.float32, device=torch.device("cpu"),
                         budget_bytes=16 * 256 * 2 * 2 * 8 * 4, slots=6, max_positions=2048, block_size=256)
    graphs = DecodeGraphs(None, cache, 6, capture=False, flash=True)
    scratch_block = graphs.scratch_row // 256
    assert cache.used_blocks == 1 and graphs._span([5, 700]) == 0  # flash: one buffer set, any length
    for slot, n in ((0, 300), (3, 40), (5, 600)):
        assert cache.grow(slot, n + 1)
        assert scratch_block not in cache.tables[slot, : cache.blocks_for(n + 1)].tolist()
    slots, cached = [0, 3, 5], [300, 40, 600]
    table = cache.tables.index_select(0, torch.tensor(slots))[:, :3]
    paged = PagedBatch(cache, torch.tensor(cached)[:, None], torch.ones(3, 1, dtype=torch.bool), None,
                       torch.zeros(3, dtype=torch.long), None, None, table, torch.tensor(cached, dtype=torch.int32), 3, 1)
    buf = graphs._buffers(0)
    graphs._fill(buf, 3, torch.tensor([7, 8, 9]), paged)
    assert graphs.size_for(3) == 4
    assert buf.tokens[:4].tolist() == [7, 8, 9, 0] and buf.positions[:4, 0].tolist() == [300, 40, 600, 0]
    assert buf.seqlens[:4].tolist() == [300, 40, 600, 0]  # a padding row has nothing cached: writes position 0
    assert torch.equal(buf.table[:3, :3], table) and bool((buf.table[:3, 3:] == scratch_block).all())
    assert bool((buf.table[3:] == scratch_block).all())  # ... of the scratch block, and reads only that
    assert buf.write_slots[3:].tolist() == [graphs.scratch_row] * 3
