"""Tests for deepocr_cli.outputs.write and deepocr_cli.outputs.results: paths, atomic writes, crops, Markdown and JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from golden import RAW, H, W, check_golden
from mdcheck import assert_clean_markdown
from PIL import Image, ImageDraw

from deepocr_cli.errors import OutputError
from deepocr_cli.outputs.atomic import atomic_write, atomic_write_bytes, atomic_write_text
from deepocr_cli.outputs.crops import JPEG_QUALITY, save_page_crops
from deepocr_cli.outputs.formats import write_document
from deepocr_cli.outputs.json import render_json
from deepocr_cli.outputs.markdown import render_markdown
from deepocr_cli.outputs.page import read_page
from deepocr_cli.outputs.parse import parse_grounded
from deepocr_cli.outputs.paths import OutputPaths, output_paths
from deepocr_cli.outputs.results import SCHEMA_VERSION, DocResult, PageError, PageResult, StoredFigure


class FakeFigure:
    """Stands in for a deep-parsing result: the writer only needs these three members."""

    def __init__(self, alt_text: str, body: str) -> None:
        self.alt_text = alt_text
        self.body = body

    def to_json(self) -> dict[str, Any]:
        return {"kind": "chart", "html": self.body}

    def markdown(self) -> str:
        return self.body


def make_page(index: int, raw_name: str, **kwargs: Any) -> PageResult:
    raw = (RAW / raw_name).read_text(encoding="utf-8")
    parsed = read_page(raw, W, H)
    page = PageResult(
        index=index, width=W, height=H, mode="gundam", grid=(2, 3), vision_tokens=856, image_embeddings=903,
        raw_text=raw.removesuffix("<｜end▁of▁sentence｜>"), generated_tokens=428, blocks=parsed.blocks,
        timing={"render": 0.25, "preprocess": 0.125, "generate": 4.5}, warnings=parsed.warnings,
        repetition=parsed.repetition,
    )  # fmt: skip
    for key, value in kwargs.items():
        setattr(page, key, value)
    return page


def page_image() -> Image.Image:
    """A white A4 page at 144 dpi with the paper's figure area painted red."""
    image = Image.new("RGB", (W, H), "white")
    ImageDraw.Draw(image).rectangle((610, 330, 1092, 791), fill=(200, 0, 0))
    return image


def make_doc(tmp_path: Path) -> tuple[DocResult, OutputPaths]:
    source = tmp_path / "in" / "papers" / "paper.pdf"
    paths = output_paths(source, tmp_path / "in", tmp_path / "out")
    paper = make_page(0, "paper_two_column.txt")
    paper.blocks[6].figure = FakeFigure(
        "Line chart: precision [%] against ratio", "<table><tr><td>10x</td><td>97%</td></tr></table>"
    )
    save_page_crops(paper, page_image(), paths)
    multi = make_page(1, "multibox.txt", mode="base", grid=(1, 1), vision_tokens=256, image_embeddings=273)
    save_page_crops(multi, page_image(), paths)
    truncated = make_page(2, "truncated_no_eos.txt", truncated=True, generated_tokens=8192)
    failed = PageResult(
        index=3, width=W, height=H, mode="gundam", grid=(2, 3), vision_tokens=856, image_embeddings=903,
        error=PageError("infer", "CUDA out of memory -- even at batch size 1"),
    )  # fmt: skip
    doc = DocResult(
        source=source, source_rel="papers/paper.pdf", size=123456, sha256="ab" * 32, page_count=4,
        model={"id": "deepseek-ai/DeepSeek-OCR", "revision": "main", "dtype": "bfloat16", "device": "cuda:0"},
        settings={"mode": "gundam", "task": "markdown", "max_tiles": 6, "max_new_tokens": 8192, "deep": True},
        pages=[paper, multi, truncated, failed], errors=["page 4: infer failed"], status="partial",
    )  # fmt: skip
    return doc, paths


# --- output paths ---------------------------------------------------------------------------------


def test_output_paths_default_next_to_source(tmp_path: Path) -> None:
    source = tmp_path / "docs" / "paper.v2.pdf"
    assert output_paths(source, tmp_path, None) == OutputPaths(
        tmp_path / "docs" / "paper.v2.md",
        tmp_path / "docs" / "paper.v2.json",
        tmp_path / "docs" / "paper.v2_images",
    )


def test_output_paths_mirror_relative_path_under_output_dir(tmp_path: Path) -> None:
    paths = output_paths(tmp_path / "in" / "a" / "b" / "scan.png", tmp_path / "in", tmp_path / "out")
    assert paths.markdown == tmp_path / "out" / "a" / "b" / "scan.md"
    assert paths.json == tmp_path / "out" / "a" / "b" / "scan.json"
    assert paths.images_dir == tmp_path / "out" / "a" / "b" / "scan_images"


def test_output_paths_single_file_root_and_outside_root(tmp_path: Path) -> None:
    source = tmp_path / "in" / "x.pdf"
    assert output_paths(source, source, tmp_path / "out").markdown == tmp_path / "out" / "x.md"
    with pytest.raises(ValueError, match="not under the input root"):
        output_paths(tmp_path / "elsewhere" / "x.pdf", tmp_path / "in", tmp_path / "out")


# --- atomic writes --------------------------------------------------------------------------------


def test_atomic_write_creates_parents_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "new" / "dir" / "paper.md"
    atomic_write_text(target, "first ✓\n")
    atomic_write_text(target, "second ✓\n")
    assert target.read_text(encoding="utf-8") == "second ✓\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["paper.md"]
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"


def test_atomic_write_failing_midway_keeps_old_file_and_removes_temp(tmp_path: Path) -> None:
    target = tmp_path / "paper.json"
    target.write_text("old complete file", encoding="utf-8")
    seen_temp: list[Path] = []

    def half_then_fail(f: Any) -> None:
        f.write(b'{"half": ')
        f.flush()
        seen_temp.extend(p for p in tmp_path.iterdir() if p.name != "paper.json")
        raise RuntimeError("generator died")

    with pytest.raises(RuntimeError, match="generator died"):
        atomic_write(target, half_then_fail)
    assert target.read_text(encoding="utf-8") == "old complete file"
    assert len(seen_temp) == 1 and re.fullmatch(r"\.paper\.json\.\d+\.[0-9a-f]{8}\.tmp", seen_temp[0].name)
    assert not seen_temp[0].exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["paper.json"]


def test_atomic_write_os_error_becomes_output_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    with pytest.raises(OutputError, match="cannot write"):
        atomic_write_text(blocker / "child.md", "y")  # the parent is a file, even root cannot do this


# --- crops ----------------------------------------------------------------------------------------


def test_save_page_crops_sizes_names_links(tmp_path: Path) -> None:
    doc, paths = make_doc(tmp_path)
    image_block = doc.pages[0].blocks[6]
    assert image_block.boxes_px == [(610, 330, 1093, 792)]
    assert image_block.image_path == "paper_images/p001_06.jpg"
    crop_file = paths.images_dir / "p001_06.jpg"
    with Image.open(crop_file) as crop:
        assert crop.format == "JPEG" and crop.size == (1093 - 610, 792 - 330)
        # The painted red area is exactly the figure's pixel box.
        r, g, b = crop.convert("RGB").getpixel((crop.width // 2, crop.height // 2))
        assert r > 180 and g < 40 and b < 40
    multi = doc.pages[1].blocks[2]
    assert multi.image_paths == ["paper_images/p002_02_b0.jpg", "paper_images/p002_02_b1.jpg"]
    assert multi.image_path == multi.image_paths[0]
    assert sorted(p.name for p in paths.images_dir.iterdir()) == [
        "p001_06.jpg", "p002_02_b0.jpg", "p002_02_b1.jpg",
    ]  # fmt: skip
    assert JPEG_QUALITY == 90


def test_save_page_crops_margin_is_clipped_and_empty_boxes_skipped(tmp_path: Path) -> None:
    page = PageResult(
        index=0, width=100, height=50, mode="base", grid=(1, 1), vision_tokens=256, image_embeddings=273
    )
    page.blocks = parse_grounded(
        "<|ref|>image<|/ref|><|det|>[[0, 0, 500, 999], [300, 300, 300, 600]]<|/det|>\n", 100, 50
    ).blocks
    paths = output_paths(tmp_path / "s.png", tmp_path, None)
    save_page_crops(page, Image.new("L", (100, 50)), paths, margin=10)
    with Image.open(paths.images_dir / "p001_00_b0.jpg") as crop:
        assert crop.size == (50 + 10, 50)  # box (0, 0, 50, 50) widened right only; page edges clip
    assert page.blocks[0].image_paths == ["s_images/p001_00_b0.jpg"]
    assert page.warnings == ["block 0: empty image box (30, 15, 30, 30), no crop saved"]


# --- Markdown -------------------------------------------------------------------------------------


def test_render_markdown_golden_and_conventions(tmp_path: Path) -> None:
    doc, paths = make_doc(tmp_path)
    md = render_markdown(doc)
    check_golden("document.md", md)
    assert_clean_markdown(md)
    assert md.startswith("<!-- page 1 -->\n\n# Optical Compression of Long Contexts\n")
    assert [int(n) for n in re.findall(r"^<!-- page (\d+) -->$", md, re.M)] == [1, 2, 3, 4]
    assert md.count("\n---\n") == 3
    assert "\n\n\n" not in md and "<|" not in md and "<center>" not in md
    assert "![Line chart: precision (%) against ratio](paper_images/p001_06.jpg)\n\n<table><tr><td>10x" in md
    assert "\\quad (1)" in md and '<table><tr><td rowspan="2">' not in md  # the table page is not in this doc
    assert "<!-- deepocr: page 3 is truncated:" in md
    assert "<!-- deepocr: page 4 failed at infer: CUDA out of memory - - even at batch size 1 -->" in md


def test_markdown_links_resolve_after_write_document(tmp_path: Path) -> None:
    doc, paths = make_doc(tmp_path)
    written = write_document(doc, paths)
    assert written == [paths.markdown, paths.json]
    md = paths.markdown.read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) == 3
    for link in links:
        assert (paths.markdown.parent / link).is_file(), link


def test_markdown_keeps_tables_html_and_collapses_blank_lines(tmp_path: Path) -> None:
    table = make_page(0, "table_page.txt")
    free = make_page(1, "free_ocr.txt", mode="small", grid=(1, 1))
    doc, _ = make_doc(tmp_path)
    doc.pages = [table, free]
    md = render_markdown(doc)
    assert '<table><tr><td rowspan="2">Mode</td><td colspan="2">English</td>' in md
    assert "Table 2: Edit distance by mode and document type.\n\n<table>" in md
    assert "N_{vis}$.\n\nAt ratios below 10x" in md  # four newlines in the output became one blank line
    assert_clean_markdown(md)


# --- JSON -----------------------------------------------------------------------------------------


def test_render_json_golden_and_fields(tmp_path: Path) -> None:
    doc, _ = make_doc(tmp_path)
    data = render_json(doc)
    check_golden("document.json", json.dumps(data, ensure_ascii=False, indent=2) + "\n")
    assert data["schema_version"] == SCHEMA_VERSION == 1
    assert data["source"] == {
        "path": "papers/paper.pdf",
        "size": 123456,
        "sha256": "ab" * 32,
        "page_count": 4,
    }
    assert data["status"] == "partial" and data["errors"] == ["page 4: infer failed"]
    first = data["pages"][0]
    assert first["compression_ratio"] == 0.5  # 428 generated / 856 vision tokens
    assert (first["mode"], first["grid"], first["image_embeddings"]) == ("gundam", [2, 3], 903)
    assert first["blocks"][6]["figure"] == {
        "kind": "chart",
        "html": "<table><tr><td>10x</td><td>97%</td></tr></table>",
    }
    assert first["blocks"][6]["image_path"] == "paper_images/p001_06.jpg"
    assert data["pages"][3]["error"] == {
        "stage": "infer",
        "message": "CUDA out of memory -- even at batch size 1",
    }
    assert data["totals"] == {
        "pages": 4, "pages_failed": 1, "pages_truncated": 1, "pages_repeating": 0,
        "blocks": 9 + 4 + 4, "generated_tokens": 428 * 2 + 8192 + 0, "vision_tokens": 856 * 3 + 256,
        "timing": {"render": 0.75, "preprocess": 0.375, "generate": 13.5},
    }  # fmt: skip


def test_table_block_json_has_rows_and_grid(tmp_path: Path) -> None:
    doc, _ = make_doc(tmp_path)
    doc.pages = [make_page(0, "table_page.txt")]
    table = render_json(doc)["pages"][0]["blocks"][1]["table"]
    assert table["rows"][0][0] == {"text": "Mode", "rowspan": 2, "colspan": 1}
    assert table["grid"][1] == ["Mode", "text", "table", "text", "table"]


def test_page_result_json_round_trip(tmp_path: Path) -> None:
    doc, _ = make_doc(tmp_path)
    for page in doc.pages:
        page.plan = {"estimate": 900, "source": "text-layer", "chosen": "gundam", "attempts": [["base", 1.2]]}
        d = json.loads(json.dumps(page.to_json()))
        back = PageResult.from_json(d)
        assert back.to_json() == page.to_json()
        assert (back.grid, back.error, back.timing) == (page.grid, page.error, page.timing)
        assert [b.table for b in back.blocks] == [b.table for b in page.blocks]
    # A page read back from the written document (extra keys) still loads, and a figure re-renders the same.
    data = render_json(doc)
    pages = [PageResult.from_json(p) for p in data["pages"]]
    figure = pages[0].blocks[6].figure
    assert isinstance(figure, StoredFigure) and figure.alt_text == "Line chart: precision [%] against ratio"
    assert render_markdown(DocResult(**{**doc.__dict__, "pages": pages})) == render_markdown(doc)
    plain = make_page(5, "cjk.txt")
    assert PageResult.from_json(plain.to_json()) == plain


def test_write_document_formats(tmp_path: Path) -> None:
    doc, paths = make_doc(tmp_path)
    assert write_document(doc, paths, formats=["json"]) == [paths.json]
    assert not paths.markdown.exists()
    assert json.loads(paths.json.read_text(encoding="utf-8"))["schema_version"] == SCHEMA_VERSION
    with pytest.raises(ValueError, match="unknown output format"):
        write_document(doc, paths, formats=["md", "docx"])
