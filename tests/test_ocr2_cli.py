"""DeepSeek-OCR-2 through the CLI: `convert`, `plan` and `infer` with random OCR-2 checkpoints (both layouts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deepocr_cli.cli import app
from deepocr_cli.model.ocr2_config import NATIVE, ORIGINAL
from deepocr_cli.planning.families import OCR2, V1, family_of
from deepocr_cli.sample_docs import make_sample_docs
from tests.conftest import SCRIPT

runner = CliRunner()


@pytest.fixture(scope="module")
def ocr2_scripted(tmp_path_factory) -> Path:
    from deepocr_cli.model import write_random_checkpoint

    return write_random_checkpoint(
        tmp_path_factory.mktemp("ocr2-scripted"), family="ocr2", layout=NATIVE, seed=1, script=SCRIPT
    )


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("samples")
    make_sample_docs(folder)
    return folder


def test_family_of_folders_and_names(ocr2_scripted, random_checkpoint):
    assert family_of(str(ocr2_scripted)) is OCR2
    assert family_of(str(random_checkpoint)) is V1
    assert family_of("deepseek-ai/DeepSeek-OCR-2") is OCR2  # not cached: the name decides
    assert family_of("deepseek-ai/DeepSeek-OCR") is V1


def test_convert_sample_docs_with_ocr2(ocr2_scripted, samples, tmp_path):
    out = tmp_path / "out"
    res = runner.invoke(
        app,
        [
            "convert",
            str(samples),
            "--model",
            str(ocr2_scripted),
            "-o",
            str(out),
            "--max-new-tokens",
            "40",
            "--json",
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    jsons = sorted(out.rglob("*.json"))
    assert jsons and sorted(out.rglob("*.md"))
    allowed = {256 + 144 * k for k in (0, 2, 3, 4, 5, 6)}
    docs = [d for d in (json.loads(p.read_text()) for p in jsons) if isinstance(d.get("pages"), list)]
    assert len(docs) >= 5  # every sample document
    for doc in docs:
        for page in doc["pages"]:
            assert page["error"] is None
            assert page["vision_tokens"] in allowed
            assert page["image_embeddings"] == page["vision_tokens"] + 1
            assert "Hello deepocr" in page["blocks"][-1]["content"]


def test_fixed_gundam_is_the_official_dynamic_mode(ocr2_scripted, tmp_path):
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (1000, 1500), "white")  # text-like lines: a blank page would be skipped
    draw = ImageDraw.Draw(img)
    for y in range(100, 1400, 40):
        draw.text((80, y), "The quick brown fox jumps over the lazy dog " * 2, fill="black")
    img.save(tmp_path / "p.png")
    res = runner.invoke(
        app, ["convert", str(tmp_path / "p.png"), "--model", str(ocr2_scripted), "--mode", "gundam", "-q"]
    )
    assert res.exit_code == 0, res.output
    page = json.loads((tmp_path / "p.json").read_text())["pages"][0]
    assert (
        page["grid"] == [2, 3] and page["vision_tokens"] == 256 + 6 * 144 and page["image_embeddings"] == 1121
    )


def test_plan_shows_ocr2_tokens_and_convert_follows_it(ocr2_scripted, samples, tmp_path):
    res = runner.invoke(app, ["plan", str(samples), "--model", str(ocr2_scripted), "--json"])
    assert res.exit_code == 0, res.output
    plan = json.loads(res.stdout)
    assert plan["model_family"] == "deepseek-ocr-2"
    vt = plan["vision_tokens"]
    assert vt["tiny"] == 256 * plan["totals"]["pages"]  # tiny = global view only
    assert vt["auto"] <= vt["gundam"]
    assert all(v % 16 == 0 for v in vt.values())  # 256 + 144 k: never a v1 count such as 100 or 64
    res = runner.invoke(app, ["plan", str(samples), "--model", str(ocr2_scripted)])
    assert res.exit_code == 0 and "DeepSeek-OCR-2: modes are tile caps" in res.output


@pytest.mark.parametrize("layout", [ORIGINAL, NATIVE])
def test_infer_both_layouts(layout, tmp_path):
    from PIL import Image

    from deepocr_cli.model import write_random_checkpoint

    ckpt = write_random_checkpoint(tmp_path / layout, family="ocr2", layout=layout, seed=1, script=SCRIPT)
    Image.new("RGB", (1400, 700), "white").save(tmp_path / "p.png")
    res = runner.invoke(
        app, ["infer", str(tmp_path / "p.png"), "--model", str(ckpt), "--json", "--max-new-tokens", "40"]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["num_vision_tokens"] == 256 + 144 * 2 + 1 and out["grid"] == [2, 1]  # gundam: up to 6 tiles
    assert out["text"].endswith("# Hello deepocr")


def test_auto_budget_escalates_one_cap_up(tmp_path):
    """A truncated page planned at the global view only is rerun with up to 2 tiles (OCR-2's next budget)."""
    import pymupdf

    from deepocr_cli.model import write_random_checkpoint
    from deepocr_cli.options import ConvertOptions
    from deepocr_cli.run.convert import convert

    ckpt = write_random_checkpoint(tmp_path / "ckpt", family="ocr2", layout=ORIGINAL, seed=0)  # never stops
    doc = pymupdf.open()
    doc.new_page(width=595, height=842).insert_text((72, 100), "A short slide title", fontsize=28)
    doc.save(tmp_path / "slide.pdf")
    report = convert([tmp_path / "slide.pdf"], ConvertOptions(model=str(ckpt), max_new_tokens=5, deep=False))
    assert report.exit_code == 3  # truncated even after escalation
    page = json.loads((tmp_path / "slide.json").read_text())["pages"][0]
    first, second = page["plan"]["attempts"]
    assert first["mode"] == "tiny" and first["truncated"] and second["mode"] == "small"
    assert (
        page["grid"] == [1, 2] and page["vision_tokens"] == 256 + 2 * 144 and page["image_embeddings"] == 545
    )


def test_ocr2_blocks_repeats_over_90_tokens_for_images_and_50_for_pdf_pages(ocr2_scripted, samples, tmp_path,
                                                                            monkeypatch):
    """The official OCR-2 runners: n-gram window 90 for images, 50 for PDFs; one run holds both."""
    from deepocr_cli.engine.scheduler import Scheduler

    seen: dict[str, int | None] = {}
    widest: list[int] = []
    real_add, real_init = Scheduler.add, Scheduler.__init__

    def init(self, *a, **k):
        real_init(self, *a, **k)
        widest.append(self.ngram.window)

    def add(self, request):
        name = Path(getattr(request.tag, "tag", None).work.doc.src.path).name if hasattr(request.tag, "tag") else "?"
        seen.setdefault(name, request.ngram_window)
        return real_add(self, request)

    monkeypatch.setattr(Scheduler, "__init__", init)
    monkeypatch.setattr(Scheduler, "add", add)
    args = ["convert", str(samples / "slide.pdf"), str(samples / "scanned_page.jpg"), "--model", str(ocr2_scripted),
            "-o", str(tmp_path / "out"), "--max-new-tokens", "20", "--no-deep", "-q"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert seen == {"slide.pdf": 50, "scanned_page.jpg": 90}
    assert widest and set(widest) == {90}
