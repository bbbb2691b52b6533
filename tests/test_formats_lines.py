"""Estimated lines and words inside a block box (the geometry the PDF layer and ALTO share)."""

from __future__ import annotations

import pytest

from deepocr_cli.outputs.lines import block_text, estimate_line_count, layout_lines
from deepocr_cli.outputs.parse import parse_grounded

PARAGRAPH = ("Vision tokens can carry text at a compression ratio of ten and we study how precision decays "
             "as the ratio grows beyond that point on every page of the benchmark.")  # fmt: skip


def test_line_count_follows_the_box_shape() -> None:
    # 80 ems of text: a wide, short box holds it in few lines, a narrow, tall one in many.
    assert estimate_line_count(80, 1000, 60) < estimate_line_count(80, 300, 400)
    # Lines of equal height whose glyphs (0.5 em, 1.2 em pitch) fill the box width.
    n = estimate_line_count(80, 500, 240)
    size = 240 / n / 1.2
    assert 80 / n * size == pytest.approx(500, rel=0.35)


def test_lines_fill_the_box_top_to_bottom_and_keep_every_word() -> None:
    box = (100.0, 200.0, 600.0, 440.0)
    lines = layout_lines(PARAGRAPH, [box])
    assert len(lines) > 2
    assert " ".join(line.text for line in lines) == PARAGRAPH
    assert lines[0].box[1] == box[1] and lines[-1].box[3] == pytest.approx(box[3])
    for a, b in zip(lines, lines[1:], strict=False):
        assert a.box[3] == pytest.approx(b.box[1])
    for line in lines:
        assert line.box[0] == box[0] and line.box[2] == box[2]
        words = line.words
        assert [w.text for w in words] == line.text.split()
        assert words[0].box[0] == box[0] and words[-1].box[2] == pytest.approx(box[2])
        assert all(a.box[2] < b.box[0] for a, b in zip(words, words[1:], strict=False))  # a space between


def test_hard_lines_stay_lines_and_cjk_breaks_between_characters() -> None:
    # A wide, short box holds one printed line per hard line; a hard line never shares a printed line.
    lines = layout_lines("Title line\nsecond", [(0.0, 0.0, 400.0, 60.0)])
    assert [line.text for line in lines] == ["Title line", "second"]
    lines = layout_lines("Title line\nsecond", [(0.0, 0.0, 100.0, 400.0)])
    assert len(lines) > 2 and lines[-1].text == "second"
    cjk = "先天下之忧而忧，后天下之乐而乐。视觉令牌可以在约十倍压缩率下保持精度。"
    lines = layout_lines(cjk, [(0.0, 0.0, 500.0, 120.0)])
    assert len(lines) >= 2 and "".join(line.text for line in lines) == cjk


def test_text_is_shared_among_several_boxes_by_area() -> None:
    big, small = (0.0, 0.0, 400.0, 900.0), (500.0, 0.0, 900.0, 100.0)
    lines = layout_lines(PARAGRAPH, [big, small])
    in_big = [line for line in lines if line.box[0] == 0.0]
    in_small = [line for line in lines if line.box[0] == 500.0]
    assert in_big and in_small
    assert len(" ".join(line.text for line in in_big)) > len(" ".join(line.text for line in in_small))
    assert " ".join(line.text for line in lines) == PARAGRAPH


def test_block_text_removes_markup_and_keeps_content() -> None:
    raw = (
        "<|ref|>sub_title<|/ref|><|det|>[[1, 1, 9, 9]]<|/det|>\n## 1 **Intro** to [links](http://x)\n\n"
        "<|ref|>equation<|/ref|><|det|>[[1, 1, 9, 9]]<|/det|>\n\\[\nE = mc^2\n\\]\n\n"
        "<|ref|>table<|/ref|><|det|>[[1, 1, 9, 9]]<|/det|>\n<table><tr><td>a &amp; b</td><td>c</td></tr>"
        "<tr><td>d</td><td></td></tr></table>\n"
    )
    heading, equation, table = parse_grounded(raw, 100, 100).blocks
    assert block_text(heading) == "1 Intro to links"
    assert block_text(equation) == "E = mc^2"
    assert block_text(table) == "a & b c\nd"
