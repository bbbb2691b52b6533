"""Tests for deepocr_cli.outputs.parse on recorded-style DeepSeek-OCR outputs (tests/data/raw)."""

from __future__ import annotations

from golden import H, W, raw

from deepocr_cli.outputs.parse import (
    COORD_MAX,
    EOS,
    Cell,
    Table,
    parse_grounded,
    parse_html_table,
    strip_markup,
    to_pixels,
)


def test_paper_page_blocks_labels_and_pixel_maths() -> None:
    page = parse_grounded(raw("paper_two_column.txt"), W, H)
    assert [b.label for b in page.blocks] == [
        "title", "text", "sub_title", "text", "equation", "text", "image", "image_caption", "text",
    ]  # fmt: skip
    assert [b.index for b in page.blocks] == list(range(9))
    title = page.blocks[0]
    assert title.boxes == [(160, 72, 838, 118)]
    # int(v / 999 * size): 160/999*1191 = 190.7, 72/999*1684 = 121.4, 838/999*1191 = 999.0, 118/999*1684 = 198.9
    assert title.boxes_px == [(190, 121, 999, 198)]
    assert title.content == "# Optical Compression of Long Contexts"
    assert page.warnings == []


def test_paper_page_content_postprocessing() -> None:
    blocks = parse_grounded(raw("paper_two_column.txt"), W, H).blocks
    assert r"\(r := N_{text} / N_{vis}\)" in blocks[3].content  # \coloneqq
    assert r"\(\mathcal{L} =: \sum_i \ell_i\)" in blocks[5].content  # \eqqcolon
    assert blocks[4].content == "\\[\nP(r) = \\frac{1}{1 + e^{k (r - r_0)}} \\quad (1)\n\\]"
    image, caption = blocks[6], blocks[7]
    assert (image.content, image.boxes) == ("", [(512, 196, 917, 470)])
    assert caption.content == "Figure 1: Precision against compression ratio on Fox."
    assert all("<|" not in b.content and "center>" not in b.content for b in blocks)


def test_coordinate_scale_uses_999_so_the_far_edge_is_the_page_edge() -> None:
    assert COORD_MAX == 999
    assert to_pixels((0, 0, 999, 999), 1191, 1684) == (0, 0, 1191, 1684)
    assert to_pixels((500, 500, 500, 500), 1000, 1000) == (500, 500, 500, 500)  # 500.5 truncated
    assert to_pixels((998, 1, 1, 998), 100, 100) == (99, 0, 0, 99)


def test_table_page_spans_grid_caption_and_footnote() -> None:
    page = parse_grounded(raw("table_page.txt"), W, H)
    assert [b.label for b in page.blocks] == ["table_caption", "table", "table_footnote", "text"]
    table = page.blocks[1].table
    assert table is not None
    assert table.rows[0] == [Cell("Mode", rowspan=2), Cell("English", colspan=2), Cell("Chinese", colspan=2)]
    assert table.grid() == [
        ["Mode", "English", "English", "Chinese", "Chinese"],
        ["Mode", "text", "table", "text", "table"],
        ["Tiny", "0.373", "0.422", "0.307", "0.266"],
        ["Small", "0.142", "0.242", "0.240", "0.159"],  # row written without </td> and </tr>
        ["Gundam & M", "see text", "see text", "see text", "see text"],
    ]
    assert page.blocks[1].content.startswith('<table><tr><td rowspan="2">Mode</td>')  # stays HTML
    assert page.blocks[0].content == "Table 2: Edit distance by mode and document type."
    assert all(b.table is None for b in page.blocks if b.label != "table")


def test_multi_box_refs_keep_every_box() -> None:
    blocks = parse_grounded(raw("multibox.txt"), W, H).blocks
    assert blocks[1].boxes == [(60, 80, 470, 950), (530, 50, 940, 210)]
    assert blocks[1].boxes_px == [(71, 134, 560, 1601), (631, 84, 1120, 353)]
    assert blocks[2].label == "image" and len(blocks[2].boxes) == 2


def test_malformed_boxes_keep_blocks_and_warn() -> None:
    page = parse_grounded(raw("malformed_boxes.txt"), W, H)
    assert [(b.label, b.boxes) for b in page.blocks] == [
        ("text", []),  # text before the first ref
        ("title", [(0, 10, 999, 60)]),  # clamped
        ("text", []),  # three coordinates
        ("text", [(200, 250, 600, 300), (10, 20, 30, 40)]),  # inverted box reordered
        ("text", []),  # garbage
        ("text", [(1, 2, 3, 4)]),  # float box skipped
        ("equation", []),  # no det at all
    ]
    assert page.blocks[0].content == "Running header without a ref"
    assert page.blocks[6].content == r"\[ E = mc^2 \]"
    assert page.warnings == [
        "block 1: clamped box [-5, 10, 1004, 60] to 0..999",
        "block 2: skipped malformed box [100, 100, 500]",
        "block 3: reordered inverted box [600, 300, 200, 250]",
        "block 4: no box in 'garbage here'",
        "block 5: skipped malformed box [12.5, 20, 30, 40]",
        "block 6: 'equation' has no <|det|> boxes",
    ]


def test_truncated_output_ending_inside_det_keeps_complete_boxes() -> None:
    page = parse_grounded(raw("truncated_no_eos.txt"), W, H)
    assert len(page.blocks) == 4
    last = page.blocks[-1]
    assert (last.label, last.boxes, last.content) == ("text", [(100, 200, 900, 240)], "")
    assert len(page.warnings) == 1 and "unclosed <|det|>" in page.warnings[0]


def test_unclosed_det_before_another_ref_keeps_its_content() -> None:
    page = parse_grounded(
        "<|ref|>text<|/ref|><|det|>[[1, 2, 3, 4]]\nBody.\n\n<|ref|>text<|/ref|><|det|>[[5, 6, 7, 8]]<|/det|>\nNext.",
        W,
        H,
    )
    assert [(b.boxes, b.content) for b in page.blocks] == [
        ([(1, 2, 3, 4)], "Body."),
        ([(5, 6, 7, 8)], "Next."),
    ]
    assert page.warnings == ["block 0: unclosed <|det|>"]


def test_truncated_inside_label_drops_the_fragment() -> None:
    page = parse_grounded("<|ref|>title<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>\n# T\n\n<|ref|>tab", W, H)
    assert [(b.label, b.content) for b in page.blocks] == [("title", "# T")]
    assert page.warnings == ["block 1: unclosed <|ref|> ('tab')"]


def test_every_prefix_of_an_output_parses_without_error() -> None:
    text = raw("table_page.txt") + raw("malformed_boxes.txt")
    for end in range(len(text) + 1):
        page = parse_grounded(text[:end], W, H)
        for block in page.blocks:
            assert all(0 <= v <= COORD_MAX for box in block.boxes for v in box)
            assert all(b[0] <= b[2] and b[1] <= b[3] for b in block.boxes)


def test_eos_is_stripped_and_optional() -> None:
    text = raw("paper_two_column.txt")
    assert text.endswith(EOS)
    with_eos = parse_grounded(text, W, H)
    without = parse_grounded(text[: -len(EOS)], W, H)
    assert with_eos == without
    assert all(EOS not in b.content for b in with_eos.blocks)


def test_free_ocr_output_is_one_text_block() -> None:
    page = parse_grounded(raw("free_ocr.txt"), W, H)
    assert len(page.blocks) == 1 and page.blocks[0].label == "text" and page.blocks[0].boxes == []
    assert page.blocks[0].content.startswith("Optical Compression of Long Contexts\n\n")


def test_cjk_text_and_table_survive() -> None:
    blocks = parse_grounded(raw("cjk.txt"), W, H).blocks
    assert blocks[0].content == "# 深度光学压缩"
    assert blocks[1].content.startswith("先天下之忧而忧，后天下之乐而乐。")
    assert blocks[2].table == Table([[Cell("模式"), Cell("令牌")], [Cell("小"), Cell("100")]])
    assert blocks[3].content == "图 1：压缩率与精度。"


def test_strip_markup_free_ocr() -> None:
    assert strip_markup(raw("free_ocr.txt")) == (
        "Optical Compression of Long Contexts\n\n"
        "Vision tokens can carry text at a compression ratio \\(r := N_{text} / N_{vis}\\).\n\n"
        "At ratios below 10x precision stays near 97%."
    )


def test_strip_markup_grounded_keeps_content_only() -> None:
    out = strip_markup(raw("paper_two_column.txt"))
    assert "<|" not in out and "title" not in out.split("\n")[0]
    assert out.startswith("# Optical Compression of Long Contexts\n\nAda Lovelace")
    assert "Figure 1: Precision against compression ratio on Fox." in out
    assert strip_markup("Locate <|ref|>the teacher<|/ref|> here") == "Locate the teacher here"


def test_parse_html_table_none_without_table() -> None:
    assert parse_html_table("just text <b>bold</b>") is None


def test_parse_html_table_tolerates_bad_spans_th_br_and_truncation() -> None:
    table = parse_html_table(
        '<table><tr><th colspan="x">A</th><th rowspan="0">B<br>C</th></tr><tr><td colspan=3>wide'
    )
    assert table == Table([[Cell("A"), Cell("B C")], [Cell("wide", colspan=3)]])
    assert table.grid() == [["A", "B C", ""], ["wide", "wide", "wide"]]


def test_parse_html_table_nested_table_text_goes_to_outer_cell() -> None:
    table = parse_html_table(
        "<table><tr><td>x<table><tr><td>in</td></tr></table></td><td>y</td></tr></table>"
    )
    assert table == Table([[Cell("x in"), Cell("y")]])


def test_grid_clips_rowspan_past_last_row_and_pads_short_rows() -> None:
    table = Table([[Cell("a", rowspan=5), Cell("b")], [Cell("c"), Cell("d"), Cell("e")]])
    assert table.grid() == [["a", "b", "", ""], ["a", "c", "d", "e"]]


def test_parse_html_table_survives_what_the_stdlib_parser_refuses() -> None:
    table = parse_html_table("<table><tr><td>a</td><td><![x](y)</td></tr></table>")
    assert table is not None and table.rows[0][0] == Cell("a")
