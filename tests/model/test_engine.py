"""OcrEngine: prompt ids per mode, scripted checkpoint, OOM back-off through a memory budget."""

from __future__ import annotations

import pytest
from PIL import Image

from deepocr_cli import prompts
from deepocr_cli.engine import load_engine
from deepocr_cli.errors import OutOfResourcesError, UsageError
from deepocr_cli.model import write_random_checkpoint
from deepocr_cli.model.engine import build_prompt_ids
from deepocr_cli.planning.modes import Mode

SCRIPT = "<|ref|>title<|/ref|><|det|>[[12, 34]]<|/det|>\n# Hello deepocr"
A4_144DPI = (1191, 1684)


@pytest.fixture(scope="module")
def scripted(tmp_path_factory):
    path = write_random_checkpoint(tmp_path_factory.mktemp("scripted"), size="tiny", seed=1, script=SCRIPT)
    return load_engine(str(path), device="cpu")


@pytest.mark.parametrize(
    ("mode", "count"),
    [(Mode.TINY, 73), (Mode.SMALL, 111), (Mode.BASE, 273), (Mode.LARGE, 421), (Mode.GUNDAM, 903)],
)
def test_prompt_ids_layout_for_an_a4_page(scripted, mode, count):
    request = scripted.prepare(Image.new("RGB", A4_144DPI, "white"), mode)
    ids = request.prompt_ids
    tail = scripted.tokenizer.encode(
        "\n<|grounding|>Convert the document to markdown.", add_special_tokens=False
    )
    assert ids == [0, *([128815] * count), *tail]
    assert request.image.num_embeddings == count


def test_prompt_is_stripped_and_text_before_the_image_is_kept(scripted):
    tok = scripted.tokenizer
    ids = build_prompt_ids(tok, "  Look: <image>\nFree OCR.  ", 3, 0, 128815)
    before = tok.encode("Look: ", add_special_tokens=False)
    after = tok.encode("\nFree OCR.", add_special_tokens=False)
    assert ids == [0, *before, 128815, 128815, 128815, *after]
    with pytest.raises(UsageError):
        build_prompt_ids(tok, "no marker", 3, 0, 128815)


def test_scripted_checkpoint_emits_the_script_then_eos_in_every_mode(scripted):
    img = Image.new("RGB", (900, 700), "white")
    requests = [
        scripted.prepare(img, m, prompt=p)
        for m in (Mode.TINY, Mode.GUNDAM)
        for p in (prompts.MARKDOWN, prompts.FREE_OCR)
    ]
    for result in scripted.generate(requests, max_new_tokens=64):
        assert result.text == SCRIPT
        assert not result.truncated
        assert result.token_ids[-1] == scripted.special.eos
        assert result.generated_tokens == len(result.token_ids)


def test_scripts_with_repeated_tokens_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="at most once"):
        write_random_checkpoint(tmp_path / "bad", size="tiny", script="[[1, 2, 3, 4]]")


def test_a_page_larger_than_the_whole_kv_budget_is_a_resources_error(tmp_path):
    path = write_random_checkpoint(tmp_path / "r", size="tiny", seed=5)
    eng = load_engine(str(path), device="cpu", memory_budget_bytes=10_000)
    request = eng.prepare(Image.new("RGB", (500, 400), "white"), Mode.TINY)
    with pytest.raises(OutOfResourcesError, match="bytes of KV cache"):
        eng.generate([request], max_new_tokens=6, batch_size=2)


def test_suggested_batch_size_follows_the_memory_budget(scripted_checkpoint) -> None:
    from deepocr_cli.engine import load_engine

    small = load_engine(str(scripted_checkpoint), memory_budget_bytes=50_000_000).suggested_batch_size(512)
    large = load_engine(str(scripted_checkpoint), memory_budget_bytes=500_000_000).suggested_batch_size(512)
    assert 1 <= small < large
    assert load_engine(str(scripted_checkpoint), memory_budget_bytes=1).suggested_batch_size(512) == 1
