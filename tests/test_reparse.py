"""`deepocr parse` and `deepocr convert --reparse`: re-rendering from raw output without the model, through the
same code path as `convert` (the first conversion runs the real model code on the scripted checkpoint)."""

from __future__ import annotations

import json
from pathlib import Path

from golden import raw
from mdcheck import assert_clean_markdown
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from deepocr_cli.cli import app
from deepocr_cli.errors import ExitCode
from deepocr_cli.outputs.page import PARSER_VERSION
from deepocr_cli.outputs.reparse import render_raw
from deepocr_cli.run.runner import retry_reason

runner = CliRunner()


def run(*args: str, input: str | None = None):
    return runner.invoke(app, list(args), input=input)


# --- deepocr parse ------------------------------------------------------------------------------------


def test_parse_prints_the_markdown_convert_writes(tmp_path: Path) -> None:
    page = tmp_path / "page.txt"
    page.write_text(raw("table_after_caption.txt"), encoding="utf-8")
    r = run("parse", str(page))
    assert r.exit_code == 0, r.output
    assert r.stdout == render_raw(raw("table_after_caption.txt"))
    assert "Table 1 | Multi resolution support" in r.stdout and "<table><tr>" in r.stdout
    assert r.stdout.index("Table 1 |") < r.stdout.index("<table>")  # caption next to (above) its table
    assert_clean_markdown(r.stdout)


def test_parse_stdin_json_is_the_page_object() -> None:
    r = run("parse", "-", "--format", "json", "--width", "1191", "--height", "1684", input=raw("loop_line_eos.txt"))
    assert r.exit_code == 0, r.output
    page = json.loads(r.stdout)
    assert (page["width"], page["height"], page["page"]) == (1191, 1684, 1)
    assert page["repetition"][0]["copies"] == 31 and page["repetition"][0]["block"] == 1
    assert [b["label"] for b in page["blocks"]] == ["sub_title", "text"]


def test_parse_free_task_and_truncated_flag() -> None:
    r = run("parse", "-", "--task", "free", "--truncated", input=raw("free_ocr_loop.txt"))
    assert r.exit_code == 0, r.output
    assert r.stdout.count("The clerk read the minutes") == 2  # the kept copy and the note's quote
    assert "is truncated" in r.stdout
    assert_clean_markdown(r.stdout)


def test_parse_figure_answer_shows_the_description_visibly() -> None:
    answer = "A bar chart photographed at an angle.\n\nThe bars are labelled North, South and East; South is tallest."
    r = run("parse", "-", "--figure", input=answer)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("![A bar chart photographed at an angle](figure.jpg)\n\n")
    assert "\n\nThe bars are labelled North, South and East" in r.stdout  # paragraphs kept, visible
    assert_clean_markdown(r.stdout)
    data = json.loads(run("parse", "-", "--figure", "--format", "json", input=answer).stdout)
    assert data["kind"] == "caption" and data["alt_text"] == "A bar chart photographed at an angle"


def test_parse_errors_are_one_line_usage_errors(tmp_path: Path) -> None:
    r = run("parse", str(tmp_path / "missing.txt"))
    assert r.exit_code == ExitCode.USAGE and "cannot read" in r.output
    assert run("parse", "-", "--format", "xml", input="x").exit_code == ExitCode.USAGE
    assert run("parse", "-", "--task", "locate", input="x").exit_code == ExitCode.USAGE


# --- escalation decision ------------------------------------------------------------------------------


def test_a_page_that_loops_then_ends_is_retried_like_a_truncated_one() -> None:
    assert retry_reason(raw("loop_table_rows.txt"), truncated=False) == "repetition"
    assert retry_reason(raw("legit_blank_form.txt"), truncated=False) is None
    assert retry_reason(raw("table_page.txt"), truncated=True) == "truncated"


# --- deepocr convert --reparse ------------------------------------------------------------------------


def _photo(path: Path) -> Path:
    img = Image.new("RGB", (400, 300), "white")
    ImageDraw.Draw(img).rectangle((60, 40, 340, 180), fill=(0, 90, 200))
    img.save(path)
    return path


def test_reparse_rebuilds_outputs_from_stored_raw_text_without_the_model(
    scripted_checkpoint: Path, tmp_path: Path
) -> None:
    src = _photo(tmp_path / "photo.png")
    args = ["convert", str(src), "--model", str(scripted_checkpoint), "--mode", "tiny", "--max-new-tokens", "32",
            "--no-deep"]
    assert run(*args).exit_code == 0
    json_path, md_path = tmp_path / "photo.json", tmp_path / "photo.md"
    data = json.loads(json_path.read_text(encoding="utf-8"))
    assert data["parser_version"] == PARSER_VERSION
    # Pretend an older parser wrote it, and that the model's answer held a caption+table and a loop.
    page = data["pages"][0]
    page["raw_text"] = page["raw_text"] + "\n\n" + raw("loop_table_rows.txt").removesuffix("<｜end▁of▁sentence｜>")
    data["parser_version"] = 1
    json_path.write_text(json.dumps(data), encoding="utf-8")
    (tmp_path / "photo_images" / "p001_00.jpg").unlink()

    (tmp_path / "photo.txt").write_text("old", encoding="utf-8")  # an output of another format, made earlier

    # A model that does not exist: --reparse must not load one.
    r = run("convert", str(src), "--reparse", "--model", str(tmp_path / "no-model"), "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)["files"][0]
    assert report["reason"] == "reparsed" and report["repeating_pages"] == 1
    assert sorted(Path(p).name for p in report["outputs"]) == ["photo.json", "photo.md", "photo.txt"]
    assert "Accounts receivable" in (tmp_path / "photo.txt").read_text(encoding="utf-8")
    again = json.loads(json_path.read_text(encoding="utf-8"))
    assert again["parser_version"] == PARSER_VERSION
    blocks = again["pages"][0]["blocks"]
    assert [b["label"] for b in blocks] == ["image", "table", "table_caption"]
    assert blocks[1]["table"] and blocks[1]["caption"] == 2 and blocks[2]["caption_of"] == 1
    assert again["pages"][0]["repetition"][0]["copies"] == 42
    assert (tmp_path / "photo_images" / "p001_00.jpg").is_file()  # the crop is drawn again from the source
    md = md_path.read_text(encoding="utf-8")
    assert "![](photo_images/p001_00.jpg)" in md and "the model repeated this 42 times" in md
    assert_clean_markdown(md)


def test_reparse_without_json_fails_that_file_only(tmp_path: Path) -> None:
    _photo(tmp_path / "a.png")
    r = run("convert", str(tmp_path / "a.png"), "--reparse", "--json")
    assert r.exit_code == ExitCode.PARTIAL
    assert "convert it first" in json.loads(r.stdout)["files"][0]["reason"]


def test_reparse_keeps_old_crops_when_the_source_changed(scripted_checkpoint: Path, tmp_path: Path) -> None:
    src = _photo(tmp_path / "photo.png")
    args = ["convert", str(src), "--model", str(scripted_checkpoint), "--mode", "tiny", "--max-new-tokens", "32",
            "--no-deep"]
    assert run(*args).exit_code == 0
    Image.new("RGB", (400, 300), "black").save(src)  # edited after conversion: its crops would be wrong now
    r = run("convert", str(src), "--reparse", "--json")
    assert r.exit_code == 0, r.output
    assert "crops not redrawn: source changed" in json.loads(r.stdout)["files"][0]["reason"]
    md = (tmp_path / "photo.md").read_text(encoding="utf-8")
    assert "![](photo_images/p001_00.jpg)" in md  # the old crop stays linked


def test_reparse_classifies_stored_figure_answers_again() -> None:
    from deepocr_cli.outputs.parse import EOS
    from deepocr_cli.outputs.reparse import page_from_raw, reparse_page
    from deepocr_cli.outputs.results import PageResult, StoredFigure

    page = page_from_raw("<|ref|>image<|/ref|><|det|>[[10, 10, 500, 500]]<|/det|>\n" + EOS, 1000, 1400)
    old = {"kind": "caption", "raw": "A harbour at dusk.\n\nFishing boats are moored along the quay.",
           "description": "A harbour at dusk. Fishing boats are moored along the quay.", "truncated": False}
    page.blocks[0].figure = StoredFigure(old, old["description"], "")  # what an older version stored
    stored = PageResult.from_json(page.to_json())
    reparse_page(stored, "markdown")
    figure = stored.blocks[0].figure
    assert figure.markdown() == "A harbour at dusk.\n\nFishing boats are moored along the quay."
    assert figure.alt_text == "A harbour at dusk"


def test_reparse_cuts_the_crops_of_a_turned_page_upright_as_convert_did(
    scripted_checkpoint: Path, tmp_path: Path
) -> None:
    import numpy as np
    import pymupdf

    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    text = "\n\n".join(["The quick brown fox jumps over the lazy dog while the archive scans its pages. " * 6] * 7)
    page.insert_textbox(pymupdf.Rect(60, 60, 535, 782), text, fontsize=10, fontname="tiro")
    pix = page.get_pixmap(dpi=120, colorspace=pymupdf.csGRAY)
    upright = np.frombuffer(pix.samples, np.uint8).reshape(pix.height, pix.width)
    src = tmp_path / "turned.png"
    Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1))).save(src)  # fed sideways
    args = ["convert", str(src), "--model", str(scripted_checkpoint), "--mode", "tiny", "--max-new-tokens", "32",
            "--no-deep"]
    assert run(*args).exit_code == 0
    stored = json.loads((tmp_path / "turned.json").read_text(encoding="utf-8"))["pages"][0]
    assert stored["scan"]["rotation"] == 90
    crop = tmp_path / "turned_images" / "p001_00.jpg"
    first = crop.read_bytes()
    crop.unlink()
    r = run("convert", str(src), "--reparse", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["files"][0]["reason"] == "reparsed"
    # cut from the page turned upright again, as the model saw it: the very same crop, not a sideways one
    assert crop.read_bytes() == first
    again = json.loads((tmp_path / "turned.json").read_text(encoding="utf-8"))["pages"][0]
    assert again["blocks"][0]["boxes_px"] == stored["blocks"][0]["boxes_px"]  # boxes still on the source page
