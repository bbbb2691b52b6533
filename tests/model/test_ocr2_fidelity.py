"""DeepSeek-OCR-2 against transformers' native DeepseekOcr2ForConditionalGeneration (float32, CPU, tiny random weights)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image, ImageDraw

from deepocr_cli import prompts
from deepocr_cli.engine.ocr import Engine
from deepocr_cli.model import write_random_checkpoint
from deepocr_cli.model.engine import NGramConfig, OcrEngine
from deepocr_cli.model.loading import load_checkpoint
from deepocr_cli.planning.modes import Mode

transformers = pytest.importorskip("transformers")
pytest.importorskip("transformers.models.deepseek_ocr2")

#: Page sizes giving k = 0, 2, 3 and 6 tiles; every global-view padding here is not 3 mod 4,
#: where transformers' floor centring and the original round-half-even centring agree.
PAGES = {0: (600, 750), 2: (1400, 700), 3: (2048, 683), 6: (1000, 1500)}
NEW_TOKENS = 6


def _page(size: tuple[int, int], seed: int) -> Image.Image:
    """A page-like RGB image: white, gray lines of 'text', a dark block (a figure)."""
    gen = torch.Generator().manual_seed(seed)
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    w, h = size
    for i, y in enumerate(range(20, h - 20, 24)):
        x1 = int(w * (0.3 + 0.6 * torch.rand(1, generator=gen).item()))
        draw.rectangle((20, y, x1, y + 10), fill=(40 + i % 50, 40, 60))
    draw.rectangle((w // 3, h // 3, w // 2, h // 2), fill=(200, 30, 30))
    return img


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("ocr2")
    native = write_random_checkpoint(root / "native", family="ocr2", layout="native", seed=3)
    original = write_random_checkpoint(root / "original", family="ocr2", layout="original", seed=3)
    return native, original


@pytest.fixture(scope="module")
def reference(ckpts):
    from transformers import (
        DeepseekOcr2ForConditionalGeneration,
        DeepseekOcr2ImageProcessorPil,
        DeepseekOcr2Processor,
        PreTrainedTokenizerFast,
    )

    native, _ = ckpts
    model, info = DeepseekOcr2ForConditionalGeneration.from_pretrained(
        native, dtype=torch.float32, output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    processor = DeepseekOcr2Processor(
        image_processor=DeepseekOcr2ImageProcessorPil(),
        tokenizer=PreTrainedTokenizerFast.from_pretrained(native),
    )
    return model.eval(), processor


@pytest.fixture(scope="module")
def engines(ckpts):
    native, original = ckpts
    return tuple(
        Engine(OcrEngine(load_checkpoint(p, device="cpu", dtype="fp32"), str(p))) for p in (native, original)
    )


def _ours(engine: Engine, image: Image.Image, prompt: str = prompts.MARKDOWN):
    return engine.prepare(image, Mode.GUNDAM, prompt)


def _first_logits(engine: Engine, req) -> torch.Tensor:
    model = engine.model
    ids = torch.tensor([req.prompt_ids])
    embeds = model.embed(ids, engine.special.image, model.encode_images([req.image]))
    pos = torch.arange(ids.shape[1])[None]
    last = torch.tensor([ids.shape[1] - 1])
    return model.forward_logits(embeds, pos, torch.ones_like(ids, dtype=torch.bool), last_index=last)[
        0
    ]  # [V]


@pytest.mark.parametrize("k", sorted(PAGES))
def test_preprocessing_equals_processor(reference, engines, k):
    _, processor = reference
    image = _page(PAGES[k], k)
    for prompt in (prompts.MARKDOWN, prompts.FREE_OCR):
        req = _ours(engines[0], image, prompt)
        ref = processor(images=image, text=prompt, return_tensors="pt")
        assert req.prompt_ids == ref["input_ids"][0].tolist()
        assert req.image.num_embeddings == 256 + 144 * k + 1
    assert torch.equal(req.image.global_view, ref["pixel_values"][0])
    assert ref["num_local_patches"].tolist() == [k]
    if k:
        assert req.image.grid[0] * req.image.grid[1] == k
        assert torch.equal(req.image.tiles, ref["pixel_values_local"])
    else:
        assert req.image.tiles is None and "pixel_values_local" not in ref


@pytest.mark.parametrize("k", sorted(PAGES))
def test_greedy_and_logits_equal_transformers(reference, engines, k):
    model, processor = reference
    image = _page(PAGES[k], k)
    ref_in = processor(images=image, text=prompts.MARKDOWN, return_tensors="pt")
    with torch.inference_mode():
        ref_logits = model(**ref_in).logits[0, -1]
        ref_ids = model.generate(**ref_in, do_sample=False, max_new_tokens=NEW_TOKENS)[
            0, ref_in["input_ids"].shape[1] :
        ]
    for engine in engines:  # native layout, then the same weights in the original layout
        req = _ours(engine, image)
        with torch.inference_mode():
            ours = _first_logits(engine, req)
        assert (ours - ref_logits).abs().max().item() < 1e-4
        (res,) = engine.generate([req], max_new_tokens=NEW_TOKENS, ngram=NGramConfig(enabled=False))
        assert res.token_ids == ref_ids.tolist()
        assert len(res.token_ids) == NEW_TOKENS


def test_batched_equals_one_at_a_time_and_layouts_agree(engines):
    reqs = [_ours(engines[0], _page(PAGES[k], k)) for k in sorted(PAGES)]
    alone = [
        engines[0].generate([r], max_new_tokens=NEW_TOKENS, ngram=NGramConfig(enabled=False))[0] for r in reqs
    ]
    engines[0].metrics = type(engines[0].metrics)()
    together = engines[0].generate(
        reqs, max_new_tokens=NEW_TOKENS, batch_size=4, ngram=NGramConfig(enabled=False)
    )
    assert [r.token_ids for r in together] == [r.token_ids for r in alone]
    assert engines[0].metrics.sequence_steps > engines[0].metrics.decode_steps  # steps held several pages
    native_sd, original_sd = (e.model.state_dict() for e in engines)
    assert native_sd.keys() == original_sd.keys()
    assert all(torch.equal(native_sd[key], original_sd[key]) for key in native_sd)
