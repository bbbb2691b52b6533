"""Page assembly on the patterns of the released model: where tables, captions and heading levels end up."""

from __future__ import annotations

from golden import H, W, raw

from deepocr_cli.outputs.markdown import markdown_text
from deepocr_cli.outputs.page import read_page


def labels(name: str) -> list[tuple[str, int | None, int | None]]:
    return [(b.label, b.caption, b.caption_of) for b in read_page(raw(name), W, H).blocks]


def test_table_written_inside_the_caption_after_an_empty_table_block() -> None:
    page = read_page(raw("table_after_caption.txt"), W, H)
    table, caption = page.blocks[1], page.blocks[2]
    assert (table.label, table.boxes) == ("table", [(167, 171, 828, 275)])  # the table's own box
    assert table.table is not None and table.table.grid()[0] == [
        "Mode", "Native Resolution", "Native Resolution", "Native Resolution", "Dynamic Resolution",
        "Dynamic Resolution",
    ]  # fmt: skip
    assert caption.content.startswith("Table 1 | Multi resolution") and "<table" not in caption.content
    assert (table.caption, caption.caption_of) == (2, 1)


def test_table_before_its_caption_links_forward() -> None:
    assert labels("table_before_caption.txt")[:2] == [("table", 1, None), ("table_caption", None, 0)]


def test_caption_text_inside_the_table_block_moves_to_a_caption_block() -> None:
    # no caption block on the page: one is made, with no box of its own
    page = read_page(raw("table_block_holds_caption.txt"), W, H)
    assert [(b.label, b.boxes) for b in page.blocks][1:] == [
        ("table_caption", []), ("table", [(100, 150, 900, 420)]),
    ]  # fmt: skip
    assert page.blocks[1].content == "Table 2. Revenue by segment (EUR million)"
    assert page.blocks[2].content.startswith("<table>") and page.blocks[2].caption == 1
    # an empty caption block beside it: the text goes there
    page = read_page(raw("table_block_caption_then_empty_caption.txt"), W, H)
    assert [b.content[:9] for b in page.blocks[:2]] == ["<table><t", "Table 5 B"]
    assert page.blocks[0].caption == 1


def test_caption_text_inside_an_image_block_moves_to_its_empty_caption() -> None:
    page = read_page(raw("image_caption_in_image_block.txt"), W, H)
    image, caption = page.blocks[0], page.blocks[1]
    assert image.content == "" and caption.content.startswith("Figure 2: Loss curves")
    assert (image.caption, caption.caption_of) == (1, 0)


def test_side_by_side_figures_take_the_caption_under_each() -> None:
    assert labels("figures_page_multi.txt")[:5] == [
        ("image", 1, None), ("image_caption", None, 0), ("image", 3, None), ("image_caption", None, 2),
        ("image_caption", None, None),  # the figure's overall caption: both images are taken
    ]  # fmt: skip


def test_heading_levels_from_hashes_label_and_size() -> None:
    levels = [(b.label, b.level) for b in read_page(raw("headings_mixed_levels.txt"), W, H).blocks if b.level]
    # "## 2" and "3 Setup" share a size; "2.1" is clearly smaller than any marked heading: one level below
    assert levels == [("title", 1), ("sub_title", 2), ("sub_title", 3), ("sub_title", 2)]
    sized = [b.level for b in read_page(raw("headings_by_size.txt"), W, H).blocks if b.level]
    assert sized == [1, 2, 3, 2]  # no # anywhere: the tallest sub-titles are 2, the smaller one 3


def test_center_becomes_alignment_and_no_html() -> None:
    page = read_page(raw("center_blocks.txt"), W, H)
    assert all(b.align == "center" for b in page.blocks)
    assert all("center>" not in b.content for b in page.blocks)


def test_math_and_prices_in_markdown() -> None:
    assert markdown_text(r"Let \( x \) be \[ y = 2 \] for $5.") == r"Let $x$ be $$y = 2$$ for \$5."
    assert markdown_text("\\[\nE = mc^2\n\\]") == "$$\nE = mc^2\n$$"
    assert markdown_text("a  \n\n\n\nb  ") == "a\n\nb"
    assert markdown_text("中文  \n第二行") == "中文\n第二行"  # CJK text untouched, only the trailing spaces go
    assert markdown_text("Street<br>Town<br>") == "Street\\\nTown"
    assert markdown_text("\\[\na = 1\n\nb = 2\n\\]\n\nNext.") == "$$\na = 1\nb = 2\n$$\n\nNext."
