"""The library entry point `convert()` through the real model code: escalation, deep parsing output,
output-name collisions."""

from __future__ import annotations

import json
from pathlib import Path

import pymupdf
import pytest
from PIL import Image

from deepocr_cli.errors import NoInputError
from deepocr_cli.options import ConvertOptions
from deepocr_cli.outputs.crops import render_molecule_images
from deepocr_cli.outputs.figures import classify_figure_answer
from deepocr_cli.outputs.json import render_json
from deepocr_cli.outputs.markdown import render_markdown
from deepocr_cli.outputs.parse import Block
from deepocr_cli.outputs.paths import output_paths
from deepocr_cli.outputs.results import DocResult, PageResult
from deepocr_cli.run.convert import convert

FIGURES = Path(__file__).parent / "data" / "figures"


def sparse_pdf(path: Path) -> Path:
    doc = pymupdf.open()
    doc.new_page(width=595, height=842).insert_text((72, 100), "A short slide title", fontsize=28)
    doc.save(path)
    return path


def test_auto_mode_escalates_a_truncated_page_one_mode_up(random_checkpoint: Path, tmp_path: Path) -> None:
    pdf = sparse_pdf(tmp_path / "slide.pdf")
    opts = ConvertOptions(model=str(random_checkpoint), max_new_tokens=5, deep=False)
    report = convert([pdf], opts)
    assert report.exit_code == 3  # the random checkpoint never reaches EOS: truncated even after escalation
    plan = json.loads((tmp_path / "slide.json").read_text())["pages"][0]["plan"]
    assert plan["estimate"]["source"] == "text_layer"
    first, second = plan["attempts"]
    assert first["mode"] == plan["choice"]["mode"] == "tiny" and first["truncated"] is True
    assert second["mode"] == "small" and second["attempt"] == 1
    assert plan["kept_attempt"] == 1
    page = json.loads((tmp_path / "slide.json").read_text())["pages"][0]
    assert page["mode"] == "small" and page["vision_tokens"] == 100


def test_no_escalate_and_fixed_modes_run_once(random_checkpoint: Path, tmp_path: Path) -> None:
    pdf = sparse_pdf(tmp_path / "slide.pdf")
    convert([pdf], ConvertOptions(model=str(random_checkpoint), max_new_tokens=5, deep=False, escalate=False))
    plan = json.loads((tmp_path / "slide.json").read_text())["pages"][0]["plan"]
    assert len(plan["attempts"]) == 1
    convert([pdf], ConvertOptions(model=str(random_checkpoint), max_new_tokens=5, mode="base", force=True))
    page = json.loads((tmp_path / "slide.json").read_text())["pages"][0]
    assert page["mode"] == "base" and page["plan"] is None


def test_same_stem_sources_get_distinct_outputs(scripted_checkpoint: Path, tmp_path: Path) -> None:
    sparse_pdf(tmp_path / "a.pdf")
    Image.new("RGB", (300, 200), "white").save(tmp_path / "a.png")
    report = convert([tmp_path], ConvertOptions(model=str(scripted_checkpoint), max_new_tokens=32))
    assert report.exit_code == 0
    assert (tmp_path / "a.pdf.json").exists() and (tmp_path / "a.png.json").exists()
    assert not (tmp_path / "a.json").exists()


def test_library_raises_no_input(tmp_path: Path) -> None:
    with pytest.raises(NoInputError):
        convert([tmp_path], ConvertOptions(model="unused"))


def test_page_with_a_chart_and_a_molecule_renders_both(tmp_path: Path) -> None:
    chart = classify_figure_answer((FIGURES / "bar_chart.txt").read_text())
    mol = classify_figure_answer((FIGURES / "aspirin.txt").read_text())
    assert (chart.kind, mol.kind) == ("chart", "molecule")
    blocks = [
        Block(index=0, label="image", boxes=[(10, 10, 400, 400)], boxes_px=[(10, 10, 400, 400)], content="",
              figure=chart, image_path="doc_images/p001_00.jpg"),
        Block(index=1, label="image", boxes=[(500, 10, 900, 400)], boxes_px=[(500, 10, 900, 400)], content="",
              figure=mol, image_path="doc_images/p001_01.jpg"),
    ]
    page = PageResult(index=0, width=1000, height=1000, mode="base", grid=(1, 1), vision_tokens=256,
                      image_embeddings=273, blocks=blocks)
    doc = DocResult(source=tmp_path / "doc.pdf", source_rel="doc.pdf", size=1, sha256="0" * 64, page_count=1,
                    model={"id": "m"}, settings={}, pages=[page])
    md = render_markdown(doc)
    assert "| --- |" in md or "|---|" in md.replace(" ", "")  # the chart became a Markdown table
    assert "```smiles" in md and "CC(=O)OC1=CC=CC=C1C(=O)O" in md
    data = render_json(doc)
    figs = [b["figure"] for b in data["pages"][0]["blocks"]]
    assert figs[0]["kind"] == "chart" and figs[0]["chart"]["rows"]
    assert figs[1]["molecule"]["formula"] == "C9H8O4" and figs[1]["molecule"]["valid"] is True
    # --render-molecules draws the valid molecule beside the crops.
    written = render_molecule_images(page, output_paths(tmp_path / "doc.pdf", tmp_path, None))
    assert [p.name for p in written] == ["p001_01_molecule.png"]
    assert Image.open(written[0]).size[0] > 0


def test_no_deep_skips_the_figure_pass(scripted_checkpoint: Path, tmp_path: Path) -> None:
    sparse_pdf(tmp_path / "p.pdf")
    convert([tmp_path], ConvertOptions(model=str(scripted_checkpoint), max_new_tokens=32, deep=False))
    block = json.loads((tmp_path / "p.json").read_text())["pages"][0]["blocks"][0]
    assert block["label"] == "image" and block["figure"] is None
    assert (tmp_path / block["image_path"]).is_file()  # the crop is still saved and linked


def test_plan_predicts_what_convert_does(scripted_checkpoint: Path, tmp_path: Path) -> None:
    from deepocr_cli.planning.plan import plan_documents

    sparse_pdf(tmp_path / "slide.pdf")
    Image.new("RGB", (1500, 2000), "white").save(tmp_path / "photo.png")
    opts = ConvertOptions(model=str(scripted_checkpoint), max_new_tokens=32, deep=False, escalate=False)
    planned = {Path(f["source"]).name: [p["mode"] for p in f["pages"]] for f in plan_documents([tmp_path], opts)["files"]}
    convert([tmp_path], opts)
    for name in ("slide", "photo"):
        pages = json.loads((tmp_path / f"{name}.json").read_text())["pages"]
        assert [p["mode"] for p in pages] == planned[f"{name}.pdf" if name == "slide" else f"{name}.png"]
    # Fixed-mode totals use the image convert would feed: a 600x480 image file is used as it is, so Gundam does
    # not tile it (256 tokens); reading its pixels as PDF points would have tiled it.
    small = tmp_path / "small"
    small.mkdir()
    Image.new("RGB", (600, 480), "white").save(small / "icon.png")
    # (a plain placeholder image: --no-skip-blank, or it would be a blank page costing nothing in every mode)
    opts = ConvertOptions(model=str(scripted_checkpoint), max_new_tokens=32, deep=False, skip_blank=False)
    gundam = plan_documents([small], opts)["vision_tokens"]["gundam"]
    convert([small], ConvertOptions(model=str(scripted_checkpoint), max_new_tokens=32, deep=False, mode="gundam",
                                    skip_blank=False))
    assert json.loads((small / "icon.json").read_text())["pages"][0]["vision_tokens"] == gundam == 256
