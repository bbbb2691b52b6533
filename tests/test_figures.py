"""Tests for deep parsing of figures: classification, typed chart/molecule/geometry data, crops and modes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from PIL import Image

from deepocr_cli.outputs.figures import (
    FigureResult,
    classify_figure_answer,
    crop_for_figure,
    figure_mode,
    parse_number,
)
from deepocr_cli.outputs.molecules import analyze_smiles, looks_like_smiles, render_molecule_png
from deepocr_cli.planning.modes import MODE_SPECS, Mode

DATA = Path(__file__).parent / "data" / "figures"
EOS = "<｜end▁of▁sentence｜>"


def answer(name: str) -> str:
    return (DATA / f"{name}.txt").read_text(encoding="utf-8")


def render_table(markdown: str) -> tuple[list[str], list[list[str]]]:
    """Render Markdown as GitHub does (GFM tables) and return the header and body cell texts."""
    html = MarkdownIt("commonmark").enable("table").render(markdown)
    assert html.count("<table>") == 1, html
    header = re.findall(r"<th>(.*?)</th>", html)
    body = [re.findall(r"<td>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", html, re.DOTALL)[1:]]
    return header, body


# --- charts -------------------------------------------------------------------------------------------------


def test_bar_chart_table_becomes_typed_columns_and_rows() -> None:
    result = classify_figure_answer(answer("bar_chart"))
    assert result.kind == "chart"
    assert EOS not in result.raw and result.raw.endswith("</table>")
    assert result.description == "Quarterly revenue by product line"
    assert result.alt_text == "Quarterly revenue by product line"
    assert result.chart is not None
    assert result.chart["columns"] == ["", "Hardware", "Software", "Services"]
    assert result.chart["rows"] == [
        ["Q1", 1234, 856, 412.5],
        ["Q2", 1310, 902, 398.0],
        ["Q3", 1287, 1045, -12],
        ["Q4", 1452, 1120, 350.0],
    ]
    assert isinstance(result.chart["rows"][0][1], int)
    assert isinstance(result.chart["rows"][3][3], float)


def test_pie_chart_percentages_become_numbers_with_a_unit() -> None:
    result = classify_figure_answer(answer("pie_chart"))
    assert result.kind == "chart" and result.chart is not None
    assert result.chart["columns"] == ["Browser", "Share"]
    assert [row[1] for row in result.chart["rows"]] == [64.7, 18.6, 5.2, 3, 8.5]
    assert result.chart["units"] == [None, "%"]
    assert result.alt_text == "Chart"


def test_colspan_header_names_columns_by_group_and_subcolumn() -> None:
    result = classify_figure_answer(answer("grouped_chart"))
    assert result.kind == "chart" and result.chart is not None
    assert result.chart["columns"] == ["Region", "2022 / H1", "2022 / H2", "2023 / H1", "2023 / H2"]
    assert result.chart["rows"] == [["North", 1200, 1350, 1410, 1520], ["South", 980, 1020, None, 1105]]
    assert result.chart["units"] == [None, "$", "$", "$", "$"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12%", (12, "%")),
        ("1,234", (1234, None)),
        ("3.5e2", (350.0, None)),
        ("\u22124", (-4, None)),
        ("-0.25", (-0.25, None)),
        ("$1,200.50", (1200.5, "$")),
        (" 7.5 % ", (7.5, "%")),
        ("2019", (2019, None)),
    ],
)
def test_parse_number_reads_chart_cells(text: str, expected: tuple[float, str | None]) -> None:
    value, unit = parse_number(text) or (None, None)
    assert (value, unit) == expected
    assert type(value) is type(expected[0])


@pytest.mark.parametrize("text", ["", "n/a", "Q1", "1,23", "12-15", "1.2.3", "—", "1e999", "9" * 60])
def test_parse_number_leaves_non_numbers_alone(text: str) -> None:
    assert parse_number(text) is None


@pytest.mark.parametrize("name", ["bar_chart", "pie_chart", "grouped_chart"])
def test_chart_markdown_renders_as_a_github_table(name: str) -> None:
    result = classify_figure_answer(answer(name))
    assert result.chart is not None
    header, body = render_table(result.markdown())
    assert header == result.chart["columns"]
    assert body == result.chart["cells"]


def test_pipe_inside_a_chart_cell_is_escaped_and_stays_one_cell() -> None:
    result = classify_figure_answer(answer("pie_chart"))
    assert "Edge \\| Legacy" in result.markdown()
    _, body = render_table(result.markdown())
    assert ["Edge | Legacy", "5.2%"] in body


def test_html_looking_cell_text_stays_text_in_markdown() -> None:
    html = "<table><tr><td>tag</td><td>n</td></tr><tr><td>&lt;img src=x&gt;</td><td>1</td></tr></table>"
    result = classify_figure_answer(html)
    assert result.chart is not None and result.chart["rows"] == [["<img src=x>", 1]]
    rendered = MarkdownIt("commonmark").enable("table").render(result.markdown())
    assert "<img" not in rendered and "&lt;img src=x&gt;" in rendered


@pytest.mark.parametrize(
    ("text", "kind", "description"),
    [
        ("A <table> of results is shown", "caption", "A of results is shown"),
        ("<table></table>", "empty", None),
    ],
)
def test_table_tag_without_cells_is_not_a_chart(text: str, kind: str, description: str | None) -> None:
    result = classify_figure_answer(text)
    assert (result.kind, result.chart, result.description) == (kind, None, description)


def test_short_row_is_padded_to_the_header_width() -> None:
    html = "<table><tr><td>x</td><td>a</td><td>b</td></tr><tr><td>1</td><td>2</td></tr></table>"
    result = classify_figure_answer(html)
    assert result.chart is not None and result.chart["rows"] == [[1, 2, None]]
    header, body = render_table(result.markdown())
    assert len(header) == 3 and body == [["1", "2", ""]]


# --- molecules ----------------------------------------------------------------------------------------------


def test_aspirin_smiles_gives_formula_and_weight() -> None:
    result = classify_figure_answer(answer("aspirin"))
    assert result.kind == "molecule" and result.molecule is not None
    assert result.raw == "CC(=O)OC1=CC=CC=C1C(=O)O"
    assert result.molecule["valid"] is True
    assert result.molecule["formula"] == "C9H8O4"
    assert result.molecule["mol_weight"] == pytest.approx(180.16, abs=0.01)
    assert result.molecule["canonical_smiles"] == "CC(=O)Oc1ccccc1C(=O)O"
    assert result.alt_text == "Chemical structure (C9H8O4)"


def test_smiles_wrapped_in_tags_is_a_molecule() -> None:
    result = classify_figure_answer(answer("caffeine"))
    assert result.kind == "molecule" and result.molecule is not None
    assert result.molecule["smiles"] == "CN1C=NC2=C1C(=O)N(C(=O)N2C)C"
    assert result.molecule["formula"] == "C8H10N4O2"
    assert result.molecule["mol_weight"] == pytest.approx(194.19, abs=0.01)


def test_molecule_markdown_is_a_smiles_block_with_formula_line() -> None:
    md = classify_figure_answer(answer("caffeine")).markdown()
    assert md.startswith("```smiles\nCN1C=NC2=C1C(=O)N(C(=O)N2C)C\n```")
    assert "C8H10N4O2" in md and "194.19" in md


@pytest.mark.parametrize(
    ("text", "smiles"),
    [(answer("invalid_smiles"), "CC(=O)OC1=CC=CC=C1C(=O"), ("C(C)(C)(C)(C)C", "C(C)(C)(C)(C)C")],
    ids=["unclosed-branch", "pentavalent-carbon"],
)
def test_invalid_smiles_is_kept_raw_and_marked_invalid(text: str, smiles: str) -> None:
    result = classify_figure_answer(text)
    assert result.kind == "molecule" and result.molecule is not None
    assert result.molecule["smiles"] == smiles
    assert result.molecule["valid"] is False
    assert result.molecule["canonical_smiles"] is None and result.molecule["formula"] is None
    assert "not a valid SMILES" in result.markdown() and smiles in result.markdown()


@pytest.mark.parametrize(
    "text",
    [
        "CCC",
        "CO",
        "NaCl",
        "no",
        "cons",
        "I",
        "B12",
        "CO-OP",
        "H2O",
        "2019",
        "12.5",
        "(1)",
        "[1]",
        "(b)",
        "(c)",
        "Figure 3",
    ],
)
def test_prose_and_numbers_are_not_read_as_smiles(text: str) -> None:
    result = classify_figure_answer(text)
    assert result.kind == "caption"
    assert result.molecule is None and result.description == text


def test_a_sentence_mentioning_a_formula_is_a_caption() -> None:
    text = "Reaction scheme: ethanol (CCO) is oxidised to acetic acid CC(=O)O over a copper catalyst."
    assert classify_figure_answer(text).kind == "caption"


@pytest.mark.parametrize("smiles", ["c1ccccc1", "[Na+].[Cl-]", "O=C=O", "CCCCCCCC", "C[C@@H](N)C(=O)O"])
def test_smiles_with_structural_evidence_is_recognised(smiles: str) -> None:
    assert looks_like_smiles(smiles)
    result = classify_figure_answer(smiles)
    assert result.kind == "molecule" and result.molecule is not None and result.molecule["valid"]


def test_analyze_smiles_rejects_empty_and_whitespace() -> None:
    assert analyze_smiles("")["valid"] is False
    assert analyze_smiles("CC O")["valid"] is False


def test_render_molecule_png_writes_a_png_atomically(tmp_path: Path) -> None:
    target = tmp_path / "mols" / "aspirin.png"
    assert render_molecule_png("CC(=O)OC1=CC=CC=C1C(=O)O", target, size=300) is True
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(target) as img:
        assert img.size == (300, 300)
        # A drawing, not a blank canvas.
        assert len(img.convert("L").getcolors(maxcolors=256 * 256) or []) > 2
    assert sorted(p.name for p in target.parent.iterdir()) == ["aspirin.png"]


def test_render_molecule_png_refuses_invalid_smiles(tmp_path: Path) -> None:
    target = tmp_path / "bad.png"
    assert render_molecule_png("C(C)(C)(C)(C)C", target) is False
    assert not target.exists() and list(tmp_path.iterdir()) == []


# --- geometry, captions, truncation -------------------------------------------------------------------------


def test_geometry_dictionary_is_parsed_into_lines_points_and_circles() -> None:
    result = classify_figure_answer(answer("geometry"))
    assert result.kind == "geometry" and result.geometry is not None and result.error is None
    geo = result.geometry
    assert len(geo["lines"]) == 4
    assert geo["lines"][0] == {"start": [-6.0, 0.0], "end": [6.0, 0.0], "type": "--"}
    assert geo["lines"][3]["type"] == "dashed"
    assert geo["points"] == {"A": [-6.0, 0.0], "B": [6.0, 0.0], "C": [0.0, 8.0], "D": [0.0, 0.0]}
    assert geo["circles"] == [{"center": [0.0, 2.25], "center_label": "O", "radius": 6.25}]
    md = result.markdown()
    assert md.startswith("```json\n") and md.endswith("\n```")
    assert json.loads(md[len("```json\n") : -len("\n```")]) == geo


def test_geometry_with_code_is_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = f"{{'Line': {{'line': [open({str(marker)!r}, 'w').write('x')]}}}}"
    result = classify_figure_answer(text)
    assert result.kind == "geometry" and result.geometry is None
    assert result.error is not None and "does not parse" in result.error
    assert not marker.exists()


def test_caption_keeps_description_and_escapes_alt_text() -> None:
    result = classify_figure_answer(answer("caption"))
    assert result.kind == "caption"
    assert result.description is not None and result.description.startswith("A black-and-white photograph")
    assert "<center>" not in result.description
    # The description is visible under the image; the alt text is its first sentence, short.
    assert result.markdown() == result.description
    assert MarkdownIt("commonmark").render(result.markdown()).startswith("<p>A black-and-white photograph")
    alt = result.alt_text
    assert len(alt) <= 100 and alt.endswith("...")
    assert "[" not in alt and "]" not in alt and "\n" not in alt
    rendered = MarkdownIt("commonmark").render(f"![{alt}](images/p001_00.jpg)")
    assert rendered.count("<img") == 1 and 'src="images/p001_00.jpg"' in rendered


def test_alt_text_backslash_cannot_escape_the_link() -> None:
    alt = classify_figure_answer("A path C:\\temp\\ shown in a window\\").alt_text
    rendered = MarkdownIt("commonmark").render(f"![{alt}](x.jpg)")
    assert rendered.count("<img") == 1


def test_truncated_answer_is_not_used_for_content() -> None:
    result = classify_figure_answer(answer("truncated"), truncated=True)
    assert result.kind == "truncated" and result.truncated is True
    assert result.chart is None and result.description is None
    assert result.raw.startswith("<table>") and result.markdown() == ""


@pytest.mark.parametrize("text", ["", "   \n", EOS, f"<center></center>{EOS}"])
def test_empty_answer_is_empty(text: str) -> None:
    result = classify_figure_answer(text)
    assert result.kind == "empty" and result.markdown() == "" and result.alt_text == "Figure"


@pytest.mark.parametrize("path", sorted(DATA.glob("*.txt")), ids=lambda p: p.stem)
def test_every_result_serialises_to_json(path: Path) -> None:
    result = classify_figure_answer(path.read_text(encoding="utf-8"), truncated=path.stem == "truncated")
    data = json.loads(json.dumps(result.to_json()))
    assert data["kind"] == result.kind and data["raw"] == result.raw
    assert FigureResult(**data) == result


# --- crops and modes ----------------------------------------------------------------------------------------


@pytest.fixture
def page() -> Image.Image:
    """A 200x100 white page with a red 100x50 figure at (50, 20)."""
    img = Image.new("RGB", (200, 100), "white")
    img.paste((255, 0, 0), (50, 20, 150, 70))
    return img


def test_crop_adds_a_small_margin_around_the_box(page: Image.Image) -> None:
    crop = crop_for_figure(page, (50, 20, 150, 70))
    assert crop.size == (104, 54)  # 2% of the 100-px long side on each edge
    assert crop.getpixel((0, 0)) == (255, 255, 255)
    assert crop.getpixel((2, 2)) == (255, 0, 0)


def test_crop_margin_is_clamped_to_the_page(page: Image.Image) -> None:
    assert crop_for_figure(page, (0, 0, 100, 50)).size == (102, 52)
    assert crop_for_figure(page, (150, 50, 260, 130), margin_frac=0.1).size == (61, 61)


def test_crop_of_a_tiny_box_still_gets_a_two_pixel_margin(page: Image.Image) -> None:
    assert crop_for_figure(page, (60, 30, 70, 40)).size == (14, 14)


def test_crop_reorders_inverted_corners_and_honours_zero_margin(page: Image.Image) -> None:
    crop = crop_for_figure(page, (150, 70, 50, 20), margin_frac=0)
    assert crop.size == (100, 50)
    assert crop.getcolors() == [(100 * 50, (255, 0, 0))]


@pytest.mark.parametrize("box", [(300, 10, 400, 50), (10, 10, 10, 50)])
def test_crop_without_area_is_an_error(page: Image.Image, box: tuple[int, int, int, int]) -> None:
    with pytest.raises(ValueError, match="no area"):
        crop_for_figure(page, box)


def test_crop_converts_to_rgb() -> None:
    rgba = Image.new("RGBA", (50, 50), (0, 0, 255, 128))
    assert crop_for_figure(rgba, (5, 5, 40, 40)).mode == "RGB"


@pytest.mark.parametrize(
    ("size", "mode"),
    [
        ((100, 80), Mode.TINY),
        ((512, 512), Mode.TINY),
        ((513, 400), Mode.SMALL),
        ((640, 480), Mode.SMALL),
        ((600, 200), Mode.BASE),  # elongated: stretching to a square would distort it 3:1
        ((641, 500), Mode.BASE),
        ((1024, 1024), Mode.BASE),
        ((1000, 300), Mode.BASE),  # small and elongated: Gundam would only upscale it
        ((1200, 900), Mode.LARGE),
        ((1280, 1280), Mode.LARGE),
        ((1281, 1000), Mode.GUNDAM),
        ((1200, 400), Mode.GUNDAM),
        ((400, 1500), Mode.GUNDAM),
        ((3000, 2000), Mode.GUNDAM),
    ],
)
def test_figure_mode_thresholds(size: tuple[int, int], mode: Mode) -> None:
    assert figure_mode(*size) is mode


@pytest.mark.parametrize("side", [16, 200, 512, 640, 700, 1024])
def test_figure_mode_never_sends_small_crops_to_gundam_or_downscales(side: int) -> None:
    for w, h in [(side, side), (side, max(1, side // 3)), (max(1, side // 5), side)]:
        mode = figure_mode(w, h)
        assert mode is not Mode.GUNDAM
        assert MODE_SPECS[mode].image_size >= max(w, h)


@pytest.mark.parametrize("size", [(0, 10), (10, -1)])
def test_figure_mode_rejects_empty_sizes(size: tuple[int, int]) -> None:
    with pytest.raises(ValueError):
        figure_mode(*size)
