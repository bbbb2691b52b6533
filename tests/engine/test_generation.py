"""Batched greedy generation: n-gram blocker, padding invariance, mixed modes, truncation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from engine_helpers import lined_page

from deepocr_cli import prompts
from deepocr_cli.engine import load_engine
from deepocr_cli.engine.ngram import NGramBlocker
from deepocr_cli.model import NGramConfig, write_random_checkpoint
from deepocr_cli.planning.modes import Mode


def _banned(blocker: NGramBlocker, seq: list[int], vocab: int = 10) -> set[int]:
    mask = blocker.banned(torch.tensor([seq]), vocab)
    return set() if mask is None else set(torch.nonzero(mask[0]).flatten().tolist())


def test_ngram_bans_the_token_that_would_repeat_an_ngram():
    b = NGramBlocker(size=3, window=50)
    # history 1 2 3 ... 1 2: the 3-gram (1, 2, 3) exists, so 3 is banned after "1 2"
    assert _banned(b, [1, 2, 3, 4, 1, 2]) == {3}
    assert _banned(b, [1, 2, 3, 4, 2, 1]) == set()


def test_ngram_only_looks_inside_the_window():
    seq = [1, 2, 3] + [5, 6, 7, 8, 9] * 2 + [1, 2]  # the (1, 2, 3) n-gram starts 15 tokens back
    assert _banned(NGramBlocker(size=3, window=15), seq) == {3}
    assert _banned(NGramBlocker(size=3, window=14), seq) == set()


def test_ngram_never_bans_whitelisted_ids():
    seq = [7, 8, 1, 7, 8, 2, 7, 8]
    assert _banned(NGramBlocker(size=3, window=50), seq) == {1, 2}
    assert _banned(NGramBlocker(size=3, window=50, whitelist=(2,)), seq) == {1}


def test_ngram_does_nothing_while_history_is_shorter_than_n():
    b = NGramBlocker(size=4, window=50)
    assert b.banned(torch.tensor([[1, 2, 1]]), 10) is None
    assert _banned(b, [1, 2, 3, 1, 2, 3]) == {1}


def test_ngram_tail_gives_the_same_ban_as_the_full_history():
    torch.manual_seed(0)
    b = NGramBlocker(size=3, window=20)
    seq = torch.randint(0, 4, (3, 200))
    full = b.banned(seq, 4)
    tail = b.banned(seq[:, -b.history :], 4)
    assert torch.equal(full, tail)


def test_ngram_with_row_lengths_equals_each_row_alone():
    torch.manual_seed(1)
    b = NGramBlocker(size=3, window=12)
    rows = [torch.randint(0, 4, (t,)).tolist() for t in (0, 2, 3, 9, 15, 40)]
    width = b.history
    padded = torch.full((len(rows), width), 3)  # padding holds a real id: it must never match
    for i, r in enumerate(rows):
        tail = r[-width:]
        if tail:
            padded[i, width - len(tail) :] = torch.tensor(tail)
    mask = b.banned(padded, 4, torch.tensor([len(r) for r in rows]))
    for i, r in enumerate(rows):
        alone = b.banned(torch.tensor([r], dtype=torch.long).reshape(1, -1), 4)
        expected = torch.zeros(4, dtype=torch.bool) if alone is None else alone[0]
        assert torch.equal(mask[i], expected), (i, r)


def test_ngram_is_per_row():
    b = NGramBlocker(size=2, window=50)
    mask = b.banned(torch.tensor([[1, 2, 1], [3, 1, 3]]), 5)
    assert set(torch.nonzero(mask[0]).flatten().tolist()) == {2}
    assert set(torch.nonzero(mask[1]).flatten().tolist()) == {1}


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    path: Path = write_random_checkpoint(tmp_path_factory.mktemp("gen"), size="tiny", seed=3)
    return load_engine(str(path), device="cpu")


def test_batched_results_equal_one_at_a_time(engine):
    requests = [
        engine.prepare(lined_page(300, 400, "a"), Mode.TINY),
        engine.prepare(lined_page(800, 600, "b"), Mode.SMALL, prompt=prompts.FREE_OCR),
        engine.prepare(lined_page(700, 900, "c"), Mode.LARGE),
        engine.prepare(lined_page(500, 500, "d"), Mode.BASE, prompt=prompts.PARSE_FIGURE),
    ]
    ngram = NGramConfig(size=2, window=10)  # small n so the blocker actually fires in 10 tokens
    batched = engine.generate(requests, max_new_tokens=10, batch_size=4, ngram=ngram)
    single = [engine.generate([r], max_new_tokens=10, batch_size=1, ngram=ngram)[0] for r in requests]
    assert len({len(r.prompt_ids) for r in requests}) == 4  # really different lengths
    for b, s in zip(batched, single, strict=True):
        assert b.token_ids == s.token_ids
        assert [t for t, _ in b.first_top5] == [t for t, _ in s.first_top5]
        for (_, vb), (_, vs) in zip(b.first_top5, s.first_top5, strict=True):
            assert vb == pytest.approx(vs, abs=1e-4)


def test_mixed_mode_batch_keeps_request_order_and_tags(engine):
    modes = [Mode.GUNDAM, Mode.TINY, Mode.LARGE, Mode.SMALL]
    requests = [engine.prepare(lined_page(640, 900, m.value), m, tag=m.value) for m in modes]
    results = engine.generate(requests, max_new_tokens=3, batch_size=4)
    assert [r.tag for r in results] == [m.value for m in modes]
    assert [r.num_image_embeddings for r in results] == [903, 73, 421, 111]
    assert [r.prompt_ids for r in results] == [r.prompt_ids for r in requests]


def test_random_checkpoint_never_stops_and_is_flagged_truncated(engine):
    request = engine.prepare(lined_page(400, 300, "x"), Mode.TINY)
    (result,) = engine.generate([request], max_new_tokens=12)
    assert result.truncated
    assert result.generated_tokens == len(result.token_ids) == 12
    assert engine.special.eos not in result.token_ids
    assert len(result.first_top5) == 5
    assert result.first_top5[0][0] == result.token_ids[0]  # greedy picks the best first logit
    values = [v for _, v in result.first_top5]
    assert values == sorted(values, reverse=True)


def test_max_new_tokens_is_bounded_by_the_context_length(engine):
    request = engine.prepare(lined_page(400, 300, "x"), Mode.TINY)
    limit = engine.config.decoder.max_position_embeddings
    request.prompt_ids = request.prompt_ids + [100] * (limit - len(request.prompt_ids) - 2)
    (result,) = engine.generate([request], max_new_tokens=50)
    assert result.generated_tokens == 2 and result.truncated


def test_ignore_eos_generates_a_fixed_length(tmp_path):
    path = write_random_checkpoint(tmp_path / "s", size="tiny", seed=1, script="Hi there")
    eng = load_engine(str(path), device="cpu")
    request = eng.prepare(lined_page(300, 300, "y"), Mode.TINY, prompt=prompts.FREE_OCR)
    (stopped,) = eng.generate([request], max_new_tokens=10)
    (fixed,) = eng.generate([request], max_new_tokens=10, ignore_eos=True)
    assert not stopped.truncated and stopped.token_ids[-1] == eng.special.eos
    assert fixed.generated_tokens == 10
    assert fixed.token_ids[: stopped.generated_tokens] == stopped.token_ids


def test_ngram_row_windows_equal_each_row_with_its_own_blocker():
    """OCR-2 blocks over 90 tokens for images and 50 for PDF pages in one batch: each row as if alone."""
    torch.manual_seed(2)
    wide = NGramBlocker(size=3, window=30)
    rows = [torch.randint(0, 4, (40,)).tolist() for _ in range(6)]
    own = [30, 12, 5, 30, 20, 1]
    history = torch.tensor([r[-wide.history:] for r in rows])
    mask = wide.banned(history, 4, torch.tensor([len(r) for r in rows]), torch.tensor(own))
    differs = 0
    for i, r in enumerate(rows):
        alone = NGramBlocker(size=3, window=own[i]).banned(torch.tensor([r]), 4)
        expected = torch.zeros(4, dtype=torch.bool) if alone is None else alone[0]
        assert torch.equal(mask[i], expected), (i, own[i])
        full = wide.banned(torch.tensor([r]), 4)
        differs += not torch.equal(expected, torch.zeros(4, dtype=torch.bool) if full is None else full[0])
    assert differs  # the windows really changed some row's bans
