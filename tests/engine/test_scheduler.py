"""The continuous-batching scheduler: same greedy output under any schedule, KV budget, preemption, metrics."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch
from engine_helpers import lined_page

from deepocr_cli import prompts
from deepocr_cli.engine import load_engine
from deepocr_cli.model import NGramConfig
from deepocr_cli.planning.modes import Mode
from tests.conftest import SCRIPT

NGRAM = NGramConfig(size=3, window=12)  # small n so the ban fires within a few dozen tokens
MODES = [Mode.TINY, Mode.SMALL, Mode.BASE, Mode.TINY, Mode.GUNDAM, Mode.SMALL, Mode.TINY, Mode.BASE, Mode.SMALL,
         Mode.TINY]
CAPS = [7, 41, 3, 60, 25, 1, 33, 12, 50, 19]  # mixed output lengths


@pytest.fixture(scope="module")
def requests(engine):
    reqs = []
    for i, (mode, cap) in enumerate(zip(MODES, CAPS, strict=True)):
        prompt = prompts.FREE_OCR if i % 3 == 1 else prompts.MARKDOWN
        req = engine.prepare(lined_page(400 + 60 * i, 700 - 30 * i, str(i)), mode, prompt, tag=i)
        req.max_new_tokens = cap
        reqs.append(req)
    return reqs


@pytest.fixture(scope="module")
def reference(engine, requests):
    """Every request generated alone."""
    return [engine.generate([r], batch_size=1, ngram=NGRAM)[0].token_ids for r in requests]


def _run(engine, requests, slots, seed=None, **options):
    """Feed requests in a (seeded) random order at random steps; returns (token ids by tag, scheduler)."""
    sched = engine.scheduler(slots, NGRAM, **options)
    pending = list(requests)
    rng = random.Random(seed)
    if seed is not None:
        rng.shuffle(pending)
    out = {}
    while pending or sched.has_work:
        if pending and (seed is None or not sched.has_work or rng.random() < 0.4):
            for _ in range(len(pending) if seed is None else rng.randint(1, 3)):
                if pending:
                    sched.add(engine.engine_request(pending.pop(0), 8192))
        for done in sched.step():
            res = engine.result(done)
            assert res.error is None
            out[res.tag] = res.token_ids
    return [out[i] for i in range(len(requests))], sched


@pytest.mark.parametrize("slots", [1, 3, 8])
def test_same_output_for_any_slot_count_and_random_arrival(engine, requests, reference, slots):
    got, sched = _run(engine, requests, slots, seed=slots)
    assert got == reference
    assert [len(t) for t in got] == CAPS  # the random checkpoint never emits EOS: each stops at its cap
    assert sched.metrics.finished == len(requests)
    assert sched.metrics.avg_running <= slots
    if slots == 8:
        assert sched.metrics.avg_running > 2  # sequences really decoded together


def test_forced_preemption_recomputes_and_keeps_outputs(engine, requests):
    # six ~100-position prompts that each grow by 60 tokens: 8-9 blocks of 16 each, 30 in the budget
    small = [i for i, m in enumerate(MODES) if m in (Mode.TINY, Mode.SMALL)][:6]
    reqs = [dataclasses.replace(requests[i], max_new_tokens=60, tag=k) for k, i in enumerate(small)]
    reference = [engine.generate([r], batch_size=1, ngram=NGRAM)[0].token_ids for r in reqs]
    budget = engine.config.decoder.kv_bytes_per_token(4) * 16 * 30
    got, sched = _run(engine, reqs, 8, seed=3, kv_budget=budget, block_size=16)
    m = sched.metrics
    assert got == reference
    assert m.preemptions >= 2 and m.recomputed_tokens > 0
    assert m.kv_peak_bytes <= budget == m.kv_budget_bytes


def test_chunked_prefill_keeps_outputs_and_lets_decoding_go_on(engine, requests, reference):
    got, sched = _run(engine, requests, 4, prefill_tokens=64)
    assert got == reference
    gundam = MODES.index(Mode.GUNDAM)
    # the ~280-position prompts took several steps of 64 positions, while decode steps still ran
    assert sched.metrics.prefill_tokens >= len(requests[gundam].prompt_ids)
    assert sched.metrics.decode_steps > max(CAPS)


def test_static_batching_gives_the_same_output_with_lower_occupancy(engine, requests, reference):
    cont, c = _run(engine, requests, 4)
    stat, s = _run(engine, requests, 4, static=True)
    assert cont == stat == reference
    assert s.metrics.occupancy < c.metrics.occupancy
    assert c.metrics.decode_steps < s.metrics.decode_steps


def test_a_request_too_large_for_the_budget_fails_alone(engine, requests):
    token_bytes = engine.config.decoder.kv_bytes_per_token(4)
    sched = engine.scheduler(3, NGRAM, kv_budget=token_bytes * 16 * 12, block_size=16)  # BASE needs 18
    results = {engine.result(f).tag: engine.result(f) for f in sched.run(
        [engine.engine_request(r, 8192) for r in requests[:6]])}
    too_big = [i for i in range(6) if MODES[i] in (Mode.BASE, Mode.GUNDAM)]
    for i in range(6):
        if i in too_big:
            assert "bytes of KV cache" in results[i].error and results[i].token_ids == []
        else:
            assert results[i].error is None and len(results[i].token_ids) == CAPS[i]
    assert sched.metrics.kv_peak_bytes <= sched.metrics.kv_budget_bytes


def test_scripted_pages_stop_on_eos_next_to_capped_ones(scripted_checkpoint):
    eng = load_engine(str(scripted_checkpoint), device="cpu")
    script_len = len(eng.generate([eng.prepare(lined_page(300, 300, "s"), Mode.TINY)], max_new_tokens=200)[0].token_ids)
    caps = [200, 5, 200, script_len - 1, 200, 9]
    reqs = []
    for i, cap in enumerate(caps):
        r = eng.prepare(lined_page(300 + 50 * i, 400, str(i)), [Mode.TINY, Mode.SMALL][i % 2], tag=i)
        r.max_new_tokens = cap
        reqs.append(r)
    sched = eng.scheduler(2, NGramConfig())
    results = sorted((eng.result(f) for f in sched.run([eng.engine_request(r, 8192) for r in reqs])),
                     key=lambda r: r.tag)
    for res, cap in zip(results, caps, strict=True):
        if cap >= script_len:
            assert res.text == SCRIPT and not res.truncated
        else:
            assert res.truncated and res.generated_tokens == cap
            assert SCRIPT.startswith(res.text)


def test_metrics_report_has_the_throughput_figures(engine, requests):
    _, sched = _run(engine, requests[:4], 2)
    report = sched.metrics.report()
    for key in ("generated_tok_per_s", "pages_per_s", "avg_running_sequences", "slot_occupancy",
                "kv_peak_bytes", "preemptions"):
        assert key in report
    assert report["generated_tokens"] == sum(CAPS[:4])
    assert report["pages"] == 4 and 0 < report["slot_occupancy"] <= 1
    assert report["kv_peak_bytes"] > 0 and report["generated_tok_per_s"] > 0


def test_a_device_oom_mid_run_preempts_and_keeps_outputs(engine, requests, reference, monkeypatch):
    real = engine.model.forward_logits
    calls = {"n": 0}

    def flaky(*args, **kwargs):  # the 6th forward runs out of device memory once
        calls["n"] += 1
        if calls["n"] == 6:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(engine.model, "forward_logits", flaky)
    got, sched = _run(engine, requests, 8)
    assert got == reference
    assert calls["n"] > 6 and sched.metrics.preemptions >= 1


def test_a_device_oom_while_encoding_images_encodes_them_in_halves(engine, requests, reference, monkeypatch):
    real = engine.model.encode_images
    sizes = []

    def small_device(images):  # more than two images at once do not fit
        sizes.append(len(images))
        if len(images) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(images)

    monkeypatch.setattr(engine.model, "encode_images", small_device)
    got, _ = _run(engine, requests, 8)
    assert got == reference
    assert max(sizes) > 2  # a too-large batch was tried, split, and every image encoded exactly once
    assert sum(n for n in sizes if n <= 2) == len(requests)
