"""Every realistic raw output under tests/data/raw, through the one page path, against its golden JSON and
Markdown (tests/data/expected/NAME.page.json, NAME.md; regenerate with DEEPOCR_REGEN=1 and review)."""

from __future__ import annotations

import json
import re

import pytest
from golden import RAW, H, W, check_golden, raw
from mdcheck import assert_clean_markdown

from deepocr_cli.outputs.crops import crop_name
from deepocr_cli.outputs.json import render_json
from deepocr_cli.outputs.markdown import block_markdown, render_markdown
from deepocr_cli.outputs.parse import EOS, parse_html_table
from deepocr_cli.outputs.reparse import page_from_raw, single_page_doc

NAMES = sorted(p.name for p in RAW.glob("*.txt"))
_CELL_RE = re.compile(r"<t[dh][^>]*>(.*?)</t[dh]>", re.S)


def _page(name: str):
    text = raw(name)
    task = "free" if name.startswith("free_") else "markdown"
    page = page_from_raw(text, W, H, task=task, truncated=not text.rstrip().endswith(EOS))
    for block in page.blocks:  # the links `convert` gives saved crops
        if block.label == "image" and block.boxes:
            block.image_paths = [f"page_images/{crop_name(0, block.index, k if len(block.boxes) > 1 else None)}"
                                 for k in range(len(block.boxes))]
            block.image_path = block.image_paths[0]
    return page


def test_there_are_at_least_forty_realistic_outputs() -> None:
    assert len(NAMES) >= 40


@pytest.mark.parametrize("name", NAMES)
def test_golden_page(name: str) -> None:
    page = _page(name)
    doc = single_page_doc(page, name)
    page_json = render_json(doc)["pages"][0]
    del page_json["raw_text"]  # the input file itself
    del page_json["blank"], page_json["scan"]  # set by the run's scan preparation, not by the parser
    stem = name.removesuffix(".txt")
    check_golden(f"{stem}.page.json", json.dumps(page_json, ensure_ascii=False, indent=2) + "\n")
    md = render_markdown(doc)
    check_golden(f"{stem}.md", md)
    assert_clean_markdown(md)


@pytest.mark.parametrize("name", NAMES)
def test_no_table_cell_is_lost_or_duplicated(name: str) -> None:
    page = _page(name)
    if page.repetition:
        pytest.skip("loops are cut on purpose")
    text = page.raw_text
    expected = []
    for m in re.finditer(r"<table\b.*?(?:</table>|$)", text, re.S):
        table = parse_html_table(m.group())
        expected += [c.text for row in table.rows for c in row] if table else []
    got = [c.text for b in page.blocks if b.table for row in b.table.rows for c in row]
    assert sorted(got) == sorted(expected)
    assert all(b.label == "table" for b in page.blocks if b.table is not None)


@pytest.mark.parametrize("name", NAMES)
def test_every_block_is_written_once_and_captions_sit_by_their_target(name: str) -> None:
    page = _page(name)
    md = render_markdown(single_page_doc(page, name))
    rendered = ["\n\n".join(block_markdown(b)) for b in page.blocks]
    for text in filter(None, rendered):
        assert md.count(text) >= rendered.count(text), text[:80]
    for block in page.blocks:
        if block.caption is None:
            continue
        target, caption = rendered[block.index], rendered[block.caption]
        if not (target and caption):
            continue
        between = md[min(md.index(target), md.index(caption)):max(md.index(target), md.index(caption))]
        assert between.replace(target, "").replace(caption, "").strip() == "", (name, block.index)


def test_every_page_and_block_key_is_documented() -> None:
    schema = (RAW.parents[2] / "docs" / "output-schema.md").read_text(encoding="utf-8")
    page = render_json(single_page_doc(_page("table_after_caption.txt")))
    keys = set(page) | set(page["pages"][0]) | set(page["pages"][0]["blocks"][0])
    keys |= set(page["pages"][0]["repetition"][0]) if page["pages"][0]["repetition"] else set()
    loop = render_json(single_page_doc(_page("loop_line_eos.txt")))["pages"][0]["repetition"][0]
    missing = sorted(k for k in keys | set(loop) if f"`{k}`" not in schema and f"`{k}." not in schema)
    assert missing == []


@pytest.mark.parametrize("name", ["table_after_caption.txt", "malformed_coords.txt", "loop_blocks_shifting_boxes.txt",
                                  "malformed_garbled_tags.txt", "cjk_paper.txt"])
def test_every_prefix_renders_clean_markdown(name: str) -> None:
    """The output may stop anywhere (token limit): no prefix may leak markup or break the Markdown."""
    text = raw(name)
    for end in range(0, len(text) + 1, 3):
        page = page_from_raw(text[:end], W, H, truncated=True)
        assert_clean_markdown(render_markdown(single_page_doc(page, name)))


def test_loop_note_follows_its_block_even_after_markup_repairs_before_it() -> None:
    text = ("<|det|>[[10, 10, 990, 40]]<|/det|>\nHeader line\n\n" + raw("malformed_garbled_tags.txt").removesuffix(EOS)
            + "\n\n<|ref|>text<|/ref|><|det|>[[100, 500, 900, 900]]<|/det|>\n"
            + "Each resident shall keep the stairwell free of bicycles and prams.\n" * 12 + EOS)
    page = page_from_raw(text, W, H)
    (loop,) = page.repetition
    held = page.blocks[loop["block"]]
    assert held.content.startswith("Each resident shall keep the stairwell")
    md = render_markdown(single_page_doc(page))
    assert md.index("Each resident shall") < md.index("the model repeated this 12 times")


def test_parser_version_is_bumped_when_the_goldens_change() -> None:
    """Runs last in this file: a golden file made by this parser version must not have changed (new ones may
    be added); DEEPOCR_REGEN=1 records the current files."""
    import hashlib
    import os

    from golden import EXPECTED

    from deepocr_cli.outputs.page import PARSER_VERSION

    files = {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(EXPECTED.glob("*.page.json")) + sorted(EXPECTED.glob("*.md"))
    }
    record_path = EXPECTED / "PARSER_VERSION.json"
    record = json.loads(record_path.read_text(encoding="utf-8")) if record_path.exists() else {}
    if record.get("parser_version") == PARSER_VERSION:
        changed = sorted(n for n, h in record.get("files", {}).items() if files.get(n) != h)
        assert changed == [], (
            f"golden outputs changed ({', '.join(changed[:5])}): bump PARSER_VERSION in deepocr_cli/outputs/page.py"
        )
    current = {"parser_version": PARSER_VERSION, "files": files}
    if os.environ.get("DEEPOCR_REGEN") == "1":
        record_path.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    assert json.loads(record_path.read_text(encoding="utf-8")) == current
