"""Deep parsing of figure crops: choose their mode, classify the answer by content and type it (facts §6)."""

from __future__ import annotations

import ast
import json
import logging
import math
import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from deepocr_cli.outputs.molecules import analyze_smiles, looks_like_smiles, smiles_tokens
from deepocr_cli.outputs.parse import Table, parse_html_table, strip_markup
from deepocr_cli.planning.modes import MODE_SPECS, Mode

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

#: Special strings that are never part of the answer (facts §4.2); EOS/BOS/pad only, tags are content-level.
_SPECIALS = ("<｜end▁of▁sentence｜>", "<｜begin▁of▁sentence｜>", "<｜▁pad▁｜>")
#: Geometry dicts longer than this are not parsed (the literal parser's cost grows with nesting and length).
MAX_GEOMETRY_LEN = 50_000
#: Tiny/Small stretch the crop to a square; the model saw pages (aspect ~1.4) stretched that way, so beyond
#: this aspect the distortion is out of its training distribution and a padding mode is used instead.
MAX_STRETCH_ASPECT = 2.0
#: Beyond this aspect a padding mode spends most of its tokens on gray padding (Base/Large keep the aspect),
#: so a crop too big for Base goes to Gundam, whose tile grid follows the aspect, rather than to Large.
ELONGATED_ASPECT = 2.0

_SMILES_TAG_RE = re.compile(r"<smiles>(.*?)(?:</smiles>|$)", re.IGNORECASE | re.DOTALL)
_TABLE_SPAN_RE = re.compile(r"<table\b.*?(?:</table>|$)", re.IGNORECASE | re.DOTALL)
_TAG_RE = re.compile(r"</?[A-Za-z][^<>]*>")
_GEOMETRY_KEY_RE = re.compile(r"""['"](?:Line|line|Circle|circle)['"]\s*:""")
_NUM = r"[+\-\u2212]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+\-]?\d+)?"
_POINT_RE = re.compile(rf"\(\s*({_NUM})\s*,\s*({_NUM})\s*\)")
# A pair as json.dumps(indent=2) lays it out; the newlines keep it from matching inside string values.
_PAIR_RE = re.compile(r"\[\n\s*(-?[\d.eE+-]+|null),\n\s*(-?[\d.eE+-]+|null)\n\s*\]")
_LABELLED_POINT_RE = re.compile(rf"^\s*([^:()]+?)\s*:\s*\(\s*({_NUM})\s*,\s*({_NUM})\s*\)\s*$")
# A chart cell number: sign (ASCII, Unicode minus, en dash), currency prefix, thousands commas, decimal,
# exponent, percent/per-mille suffix. Anything else stays text.
_CELL_NUMBER_RE = re.compile(
    r"^(?P<sign>[+\-\u2212\u2013])?\s*(?P<prefix>[$€£¥₹])?\s*"
    r"(?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+)(?P<exp>[eE][+\-\u2212]?\d+)?\s*(?P<suffix>%|‰)?$"
)


@dataclass
class FigureResult:
    """The typed reading of one ``Parse the figure.`` answer.

    Attributes:
        kind: "chart", "molecule", "geometry", "caption", "truncated" or "empty".
        raw: the model answer with EOS/BOS/pad strings removed.
        chart: ``{"columns", "rows", "units", "cells"}``: typed body rows, per-column unit (or None) and the
            body as the model wrote it.
        molecule: `analyze_smiles` of the SMILES (invalid ones keep ``valid: False`` and the raw string).
        geometry: ``{"lines", "points", "circles"}`` parsed from the model's dictionary.
        description: caption text, or a chart's title (text beside the table).
        truncated: the generation hit the token limit; nothing of the answer is used.
        error: why a structure that was recognised could not be parsed.
    """

    kind: str
    raw: str
    chart: dict | None = None
    molecule: dict | None = None
    geometry: dict | None = None
    description: str | None = None
    truncated: bool = False
    error: str | None = None

    def to_json(self) -> dict:
        """Return a JSON-serialisable dict with every field (absent parts are null)."""
        return asdict(self)

    def markdown(self) -> str:
        """Markdown to place under the figure link; "" when the figure has nothing beyond its alt text."""
        if self.kind == "chart" and self.chart:
            return _markdown_table(self.chart["columns"], self.chart["cells"])
        if self.kind == "molecule" and self.molecule:
            m = self.molecule
            block = _fence("smiles", m["smiles"])
            if m["valid"]:
                return f"{block}\n\nFormula: {m['formula']}, molecular weight: {m['mol_weight']} g/mol"
            return f"{block}\n\n(not a valid SMILES string according to RDKit; shown as the model wrote it)"
        if self.kind == "geometry" and self.geometry:
            text = json.dumps(self.geometry, indent=2, ensure_ascii=False)
            # One coordinate pair per line instead of three lines per pair.
            return _fence("json", _PAIR_RE.sub(r"[\1, \2]", text))
        if self.kind == "caption" and self.description:
            return _description_markdown(self.description)
        return ""

    @property
    def alt_text(self) -> str:
        """Alt text for the figure's image link: the description when there is one, else a kind label."""
        if self.description:
            text = _short(" ".join(self.description.split()))
            # Brackets would end the link text; parentheses read the same and need no escape.
            return text.replace("\\", "\\\\").replace("[", "(").replace("]", ")")
        if self.kind == "molecule" and self.molecule and self.molecule.get("formula"):
            return f"Chemical structure ({self.molecule['formula']})"
        labels = {"chart": "Chart", "molecule": "Chemical structure", "geometry": "Geometry figure"}
        return labels.get(self.kind, "Figure")


#: Longest alt text: a description's first sentence, cut at a word.
MAX_ALT_CHARS = 100
_CENTER_TAG_RE = re.compile(r"</?center>", re.IGNORECASE)


def _short(text: str) -> str:
    """The first sentence of a description, at most `MAX_ALT_CHARS` characters (cut at a word, with "...")."""
    m = re.search(r"[.!?。！？](?=\s|$)", text)
    sentence = text[: m.end()] if m else text
    if len(sentence) <= MAX_ALT_CHARS:
        return sentence.rstrip(".。")
    cut = sentence[: MAX_ALT_CHARS - 3].rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:") + "..."


def _description_markdown(text: str) -> str:
    """A free-text description as visible paragraphs (line breaks inside a paragraph kept as spaces)."""
    text = _CENTER_TAG_RE.sub("", text).replace("<|", "&lt;|").replace("|>", "|&gt;")
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n[ \t]*\n", text)]
    # A paragraph must not turn into a heading, list or HTML block by its first character.
    escaped = (re.sub(r"^(\d+)([.)])", r"\1\\\2", re.sub(r"^([#>+\-*<=])", r"\\\1", p)) for p in paragraphs)
    return "\n\n".join(p for p in escaped if p)


def classify_figure_answer(text: str, truncated: bool = False) -> FigureResult:
    """Classify a deep-parsing answer by its content and parse it into typed data.

    Order: truncated answers are not used; an HTML table is a chart; ``<smiles>X</smiles>`` with a
    SMILES-shaped X, or a lone token that passes `looks_like_smiles`, is a molecule (RDKit validity is
    reported, not required, so an invalid SMILES stays a molecule with ``valid: False``); a dict literal
    with a ``Line``/``Circle`` key is geometry; everything else is a caption. Never evaluates the text.

    Args:
        text: the decoded answer, special tokens possibly included.
        truncated: generation stopped at the token limit (no EOS).

    Returns:
        The classified result.
    """
    raw = text
    for special in _SPECIALS:
        raw = raw.replace(special, "")
    raw = raw.strip()
    if truncated:
        return FigureResult("truncated", raw, truncated=True)
    content = strip_markup(raw)
    if not content:
        return FigureResult("empty", raw)
    if "<table" in content.lower():
        return _classify_table(raw, content)
    tagged = _SMILES_TAG_RE.search(content)
    if tagged:
        inner = tagged.group(1).strip()
        if len(inner.split()) == 1 and smiles_tokens(inner) is not None:
            return FigureResult("molecule", raw, molecule=analyze_smiles(inner))
        content = _SMILES_TAG_RE.sub(lambda m: m.group(1), content).strip()
    if content.startswith("{") and _GEOMETRY_KEY_RE.search(content):
        geometry, error = parse_geometry(content)
        if error:
            log.debug("geometry answer not parsed: %s", error)
        return FigureResult("geometry", raw, geometry=geometry, error=error)
    if len(content.split()) == 1 and looks_like_smiles(content):
        return FigureResult("molecule", raw, molecule=analyze_smiles(content))
    return FigureResult("caption", raw, description=content)


def _classify_table(raw: str, content: str) -> FigureResult:
    """Chart from the answer's (first) HTML table; text beside the table becomes its description."""
    title = " ".join(_TABLE_SPAN_RE.sub(" ", content).split()) or None
    table = parse_html_table(content)
    chart = chart_from_table(table) if table is not None else None
    if chart is None:
        # A table tag without cells is prose that mentions one, or an empty answer: keep the words.
        words = " ".join(_TAG_RE.sub(" ", content).split())
        return FigureResult("caption" if words else "empty", raw, description=words or None)
    return FigureResult("chart", raw, chart=chart, description=title)


# --- charts -------------------------------------------------------------------------------------------------


def parse_number(text: str) -> tuple[int | float, str | None] | None:
    """Read a chart cell as a number: "12%", "1,234", "3.5e2", "−4", "$1.5" and the like.

    Returns:
        (value, unit) with the value as written (12% is 12, unit "%"), int when there is no decimal point or
        exponent; None when the cell is not a number.
    """
    m = _CELL_NUMBER_RE.match(text.strip())
    if m is None or len(m["num"]) > 40:  # longer is an ID or a runaway answer, not a plotted value
        return None
    digits = m["num"].replace(",", "") + (m["exp"] or "").replace("\u2212", "-")
    value: int | float = float(digits) if "." in digits or m["exp"] else int(digits)
    if not math.isfinite(value):  # "1e999" would become Infinity, which JSON cannot hold
        return None
    if m["sign"] and m["sign"] != "+":
        value = -value
    return value, m["prefix"] or m["suffix"]


def _header_rows(table: Table) -> int:
    """Rows forming the header: the first row, plus rows joined to it by a row or column span.

    The chart-to-table format puts series or category names in the first row (no ``<thead>``, facts §5.1);
    a grouped header (``colspan`` over sub-columns, ``rowspan`` down to them) continues into the next rows.
    """
    n = 1
    while n < len(table.rows) - 1:
        spans_down = any(r + cell.rowspan > n for r in range(n) for cell in table.rows[r])
        groups = any(cell.colspan > 1 for cell in table.rows[n - 1])
        if not (spans_down or groups):
            break
        n += 1
    return n


def chart_from_table(table: Table) -> dict[str, Any] | None:
    """Turn a chart's HTML table into columns and typed rows.

    Column names join the distinct header texts above each column with " / " ("2022 / Q1"). Body cells
    become int/float where `parse_number` reads them, None when empty, text otherwise. A column's unit is
    kept when all its numbers share one.

    Returns:
        ``{"columns", "rows", "units", "cells"}``, or None when the table has no cells.
    """
    grid = table.grid()
    if not grid or not grid[0]:
        return None
    n_header = _header_rows(table) if len(grid) > 1 else 0
    width = len(grid[0])
    columns = []
    for c in range(width):
        names: list[str] = []
        for row in grid[:n_header]:
            if row[c] and (not names or names[-1] != row[c]):
                names.append(row[c])
        columns.append(" / ".join(names))
    cells = grid[n_header:]
    rows: list[list[Any]] = []
    col_units: list[set[str | None]] = [set() for _ in range(width)]
    for body_row in cells:
        typed: list[Any] = []
        for c, cell in enumerate(body_row):
            number = parse_number(cell)
            if number is not None:
                col_units[c].add(number[1])
            typed.append(number[0] if number is not None else (cell or None))
        rows.append(typed)
    units = [next(iter(u)) if len(u) == 1 else None for u in col_units]
    return {"columns": columns, "rows": rows, "units": units, "cells": cells}


def _md_cell(text: str) -> str:
    """Escape a table cell for GitHub Markdown: one line, backslashes, pipes, ``<`` and ``>`` (no raw HTML, and
    nothing that reads as a grounding tag)."""
    return (" ".join(text.split()).replace("\\", "\\\\").replace("|", "\\|").replace("<", "\\<")
            .replace(">", "\\>"))


def _markdown_table(columns: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table; short rows are padded so every line has the header's width."""
    width = len(columns)
    lines = [columns, *([*row, *[""] * (width - len(row))][:width] for row in rows)]
    rendered = ["| " + " | ".join(_md_cell(c) for c in line) + " |" for line in lines]
    return "\n".join([rendered[0], "|" + " --- |" * width, *rendered[1:]])


def _fence(info: str, body: str) -> str:
    """A fenced code block whose fence is longer than any backtick run inside the body."""
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{body}\n{fence}"


# --- geometry -----------------------------------------------------------------------------------------------


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _number(value: Any) -> float | None:
    try:
        result = float(str(value).replace("\u2212", "-"))
    except ValueError:
        return None
    return result if math.isfinite(result) else None


def parse_geometry(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """Parse a plane-geometry answer (facts §6) into lines, labelled points and circles.

    The answer is a Python-style dict literal: ``Line`` → {``line``: ["(x, y) -- (x, y)", ...],
    ``line_type``: [...], ``line_endpoint``: ["A: (x, y)", ...]}, optional ``Circle`` → {``circle_center``:
    ["O: (x, y)"], ``radius``: [...]}. It is read with `ast.literal_eval`, which builds literals only and
    never runs code (upstream ``eval``s it; we do not), after a length cap.

    Returns:
        (geometry, None) with geometry = ``{"lines": [{"start", "end", "type"}], "points": {label: [x, y]},
        "circles": [{"center", "center_label", "radius"}]}``, or (None, reason) when it cannot be read.
    """
    if len(text) > MAX_GEOMETRY_LEN:
        return None, f"geometry answer longer than {MAX_GEOMETRY_LEN} characters"
    try:
        data = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
        return None, f"geometry dictionary does not parse: {type(e).__name__}"
    if not isinstance(data, dict):
        return None, "geometry answer is not a dictionary"
    sections = {str(k).lower(): v for k, v in data.items()}
    line_part = sections.get("line") if isinstance(sections.get("line"), dict) else {}
    circle_part = sections.get("circle") if isinstance(sections.get("circle"), dict) else {}
    lines: list[dict[str, Any]] = []
    points: dict[str, list[float | None]] = {}
    circles: list[dict[str, Any]] = []
    types = _as_list(line_part.get("line_type", []))
    for i, item in enumerate(_as_list(line_part.get("line", []))):
        ends = _POINT_RE.findall(str(item))
        if len(ends) == 2:
            (x1, y1), (x2, y2) = ends
            kind = str(types[i]) if i < len(types) else None
            lines.append(
                {"start": [_number(x1), _number(y1)], "end": [_number(x2), _number(y2)], "type": kind}
            )
    for item in _as_list(line_part.get("line_endpoint", [])):
        m = _LABELLED_POINT_RE.match(str(item))
        if m:
            points[m[1]] = [_number(m[2]), _number(m[3])]
    radii = _as_list(circle_part.get("radius", []))
    for i, item in enumerate(_as_list(circle_part.get("circle_center", []))):
        m = _LABELLED_POINT_RE.match(str(item))
        if m:
            radius = _number(radii[i]) if i < len(radii) else None
            circles.append({"center": [_number(m[2]), _number(m[3])], "center_label": m[1], "radius": radius})
    if not (lines or points or circles):
        return None, "geometry dictionary has no readable line, point or circle"
    return {"lines": lines, "points": points, "circles": circles}, None


# --- crops and modes ----------------------------------------------------------------------------------------


def crop_for_figure(
    image: Image.Image, box_px: tuple[int, int, int, int], margin_frac: float = 0.02
) -> Image.Image:
    """Cut a figure out of the page with a small margin, clamped to the page.

    The layout boxes come from 1000 coordinate bins, so their edges can fall a few pixels inside the figure;
    a margin of ``margin_frac`` of the box's longer side (at least 2 px) keeps axis labels and legends whole.

    Args:
        image: the rendered page the box refers to.
        box_px: (x1, y1, x2, y2) in page pixels; inverted corners are reordered.
        margin_frac: margin as a fraction of the box's longer side (0 for none).

    Returns:
        The crop, RGB.

    Raises:
        ValueError: the box has no area inside the page, or the margin is negative.
    """
    if margin_frac < 0:
        raise ValueError(f"margin_frac must be >= 0, got {margin_frac}")
    x1, x2 = sorted((int(box_px[0]), int(box_px[2])))
    y1, y2 = sorted((int(box_px[1]), int(box_px[3])))
    margin = max(2, round(margin_frac * max(x2 - x1, y2 - y1))) if margin_frac > 0 else 0
    left, top = max(0, x1 - margin), max(0, y1 - margin)
    right, bottom = min(image.width, x2 + margin), min(image.height, y2 + margin)
    if right - left < 1 or bottom - top < 1 or x2 <= x1 or y2 <= y1:
        raise ValueError(f"figure box {box_px} has no area inside the {image.width}x{image.height} page")
    crop = image.crop((left, top, right, bottom))
    return crop if crop.mode == "RGB" else crop.convert("RGB")


def figure_mode(width: int, height: int) -> Mode:
    """Resolution mode for a figure crop of this pixel size (facts §3.2).

    The smallest mode whose input side covers the crop's long side, so nothing is downscaled and small crops
    are not inflated: <= 512 px Tiny (64 tokens), <= 640 Small (100), both only when the aspect is at most
    `MAX_STRETCH_ASPECT` because these modes stretch to a square; <= 1024 Base (pads, keeps the aspect; also
    the home of small elongated crops, since Gundam would only upscale them); <= 1280 Large unless the crop
    is elongated (`ELONGATED_ASPECT`: Large's padding would waste most of its 400 tokens, Gundam's tiles
    follow the aspect); anything larger Gundam (1024 global view plus 640-px tiles, 256 + 100 per tile).

    Raises:
        ValueError: a side is not positive.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"crop size must be positive, got {width}x{height}")
    long_side, aspect = max(width, height), max(width, height) / min(width, height)
    if aspect <= MAX_STRETCH_ASPECT:
        for mode in (Mode.TINY, Mode.SMALL):
            if long_side <= MODE_SPECS[mode].image_size:
                return mode
    if long_side <= MODE_SPECS[Mode.BASE].image_size:
        return Mode.BASE
    if aspect <= ELONGATED_ASPECT and long_side <= MODE_SPECS[Mode.LARGE].image_size:
        return Mode.LARGE
    # long_side > 1024 > 640 here, so Gundam really tiles the crop instead of degrading to Base.
    return Mode.GUNDAM
