"""Parse DeepSeek-OCR's grounded markup (ref/det tags, HTML tables) into blocks, without ever evaluating it."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

log = logging.getLogger(__name__)

#: End-of-sentence string (id 1). The PDF runner keeps it in the output, and its absence means the
#: generation hit the token limit (facts §4.2, §5.2).
EOS = "<｜end▁of▁sentence｜>"
#: Other special strings that may leak into decoded text and are never content (facts §4.2).
_STRAY_SPECIALS = ("<｜begin▁of▁sentence｜>", "<｜▁pad▁｜>", "<|grounding|>", "<image>")

#: Largest model-space coordinate. The paper speaks of "1000 bins", but upstream de-normalises with
#: ``int(v / 999 * W)``, so 999 maps to the far edge; we follow the code the model was tuned against.
COORD_MAX = 999
#: A span attribute beyond this is a hallucination; clamping it keeps ``Table.grid`` small.
MAX_SPAN = 1000

_REF_OPEN, _REF_CLOSE = "<|ref|>", "<|/ref|>"
_DET_OPEN, _DET_CLOSE = "<|det|>", "<|/det|>"
_TAG_RE = re.compile(r"<\|/?(?:ref|det)\|>")
_INNER_LIST_RE = re.compile(r"\[([^\[\]]*)\]")
_INT_RE = re.compile(r"[+-]?\d+")
_CENTER_RE = re.compile(r"</?center>", re.IGNORECASE)
# Upstream rewrites these two macros because common Markdown math renderers lack them (facts §5.2).
_LATEX_FIXES = ((r"\coloneqq", ":="), (r"\eqqcolon", "=:"))

#: Tags that separate words inside a cell (line breaks, nested tables and blocks).
_BREAK_TAGS = frozenset({"br", "table", "tr", "td", "th", "p", "div", "li"})

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Cell:
    """One table cell.

    Attributes:
        text: the cell's text, whitespace collapsed, tags removed.
        rowspan: rows the cell covers (>= 1).
        colspan: columns the cell covers (>= 1).
    """

    text: str
    rowspan: int = 1
    colspan: int = 1


@dataclass(frozen=True)
class Table:
    """An HTML table as rows of cells, spans kept as attributes."""

    rows: list[list[Cell]]

    def grid(self) -> list[list[str]]:
        """Expand rowspan/colspan into a rectangular grid of strings.

        A spanning cell's text is repeated in every position it covers; short rows are padded with
        ``""``. Row spans that run past the last row are clipped, as browsers do.

        Returns:
            One list per row, all of the same length.
        """
        n_rows = len(self.rows)
        taken: dict[tuple[int, int], str] = {}
        for r, row in enumerate(self.rows):
            c = 0
            for cell in row:
                while (r, c) in taken:
                    c += 1
                for dr in range(min(cell.rowspan, n_rows - r)):
                    for dc in range(cell.colspan):
                        taken[(r + dr, c + dc)] = cell.text
                c += cell.colspan
        width = max((c for _, c in taken), default=-1) + 1
        return [[taken.get((r, c), "") for c in range(width)] for r in range(n_rows)]


@dataclass
class Block:
    """One layout block of a page, in reading order.

    Attributes:
        index: position among the page's blocks (0-based).
        label: layout label as the model wrote it (title, sub_title, text, image, table, ...).
        boxes: boxes in model space 0..COORD_MAX as (x1, y1, x2, y2), clamped and ordered.
        boxes_px: the same boxes in pixels of the rendered page.
        content: block Markdown with grounding tags removed (tables stay HTML, math stays LaTeX).
        table: the parsed table when the content holds an HTML table.
        figure: deep-parsing result (has ``to_json()``, ``markdown()``, ``alt_text``), set later.
        image_path: relative link of the first saved crop of an ``image`` block, set by the writer.
        image_paths: relative links of every saved crop (one per box), set by the writer.
    """

    index: int
    label: str
    boxes: list[Box]
    boxes_px: list[Box]
    content: str
    table: Table | None = None
    figure: object | None = None
    image_path: str | None = None
    image_paths: list[str] = field(default_factory=list)


@dataclass
class ParsedPage:
    """Blocks of one page plus everything that looked wrong while parsing it."""

    blocks: list[Block]
    warnings: list[str]


def to_pixels(box: Box, width: int, height: int) -> Box:
    """Map a model-space box to page pixels exactly as upstream does: ``int(v / 999 * size)``."""
    x1, y1, x2, y2 = box
    return (
        int(x1 / COORD_MAX * width),
        int(y1 / COORD_MAX * height),
        int(x2 / COORD_MAX * width),
        int(y2 / COORD_MAX * height),
    )


def strip_eos(text: str) -> tuple[str, bool]:
    """Remove a trailing EOS string.

    Returns:
        The text without it, and whether it was there.
    """
    stripped = text.rstrip()
    if stripped.endswith(EOS):
        return stripped[: -len(EOS)], True
    return text, False


def _clean_content(text: str) -> str:
    """Post-process one block's Markdown the way upstream does, keeping the content."""
    for old, new in _LATEX_FIXES:
        text = text.replace(old, new)
    text = _CENTER_RE.sub("", text)
    for special in (EOS, *_STRAY_SPECIALS):
        text = text.replace(special, "")
    return text.strip()


def _parse_boxes(raw: str, where: str, warnings: list[str]) -> list[Box]:
    """Parse the inside of a det span; keep every well-formed box, warn about the rest."""
    boxes: list[Box] = []
    lists = _INNER_LIST_RE.findall(raw)
    leftover = _INNER_LIST_RE.sub("", raw)
    if not lists:
        warnings.append(f"{where}: no box in {raw.strip()[:60]!r}")
    elif re.search(r"[^\s,\[\]]", leftover):
        warnings.append(f"{where}: unexpected text in boxes: {raw.strip()[:60]!r}")
    for item in lists:
        parts = [p.strip() for p in item.split(",")]
        if len(parts) != 4 or not all(_INT_RE.fullmatch(p) for p in parts):
            warnings.append(f"{where}: skipped malformed box [{item.strip()[:60]}]")
            continue
        values = [int(p) for p in parts]
        clamped = [min(max(v, 0), COORD_MAX) for v in values]
        if clamped != values:
            warnings.append(f"{where}: clamped box {values} to 0..{COORD_MAX}")
        x1, y1, x2, y2 = clamped
        if x1 > x2 or y1 > y2:
            warnings.append(f"{where}: reordered inverted box {clamped}")
            x1, x2 = sorted((x1, x2))
            y1, y2 = sorted((y1, y2))
        boxes.append((x1, y1, x2, y2))
    return boxes


def parse_grounded(text: str, width: int, height: int) -> ParsedPage:
    """Split grounded model output into layout blocks.

    Each block is ``<|ref|>LABEL<|/ref|><|det|>[[x1, y1, x2, y2], ...]<|/det|>`` followed by its content
    up to the next ref. Text before the first ref becomes a ``text`` block without boxes. Nothing here
    raises on bad markup: malformed or truncated tags keep what parses and add a warning.

    Args:
        text: raw model output, special tokens kept; a trailing EOS string is removed.
        width: pixel width of the page the model saw (for ``boxes_px``).
        height: pixel height of that page.

    Returns:
        The blocks in reading order and the parse warnings.
    """
    text, _ = strip_eos(text)
    warnings: list[str] = []
    blocks: list[Block] = []

    def add(label: str, boxes: list[Box], content: str, keep_empty: bool = True) -> None:
        cleaned = _clean_content(content)
        if _TAG_RE.search(cleaned):
            warnings.append(f"block {len(blocks)}: removed stray grounding tags")
            cleaned = _TAG_RE.sub("", cleaned).strip()
        if not keep_empty and not cleaned:
            return
        table = parse_html_table(cleaned) if "<table" in cleaned.lower() else None
        px = [to_pixels(b, width, height) for b in boxes]
        blocks.append(Block(len(blocks), label, boxes, px, cleaned, table))

    pos = text.find(_REF_OPEN)
    add("text", [], text if pos < 0 else text[:pos], keep_empty=False)
    while pos >= 0:
        where = f"block {len(blocks)}"
        label_start = pos + len(_REF_OPEN)
        label_end = text.find(_REF_CLOSE, label_start)
        next_ref = text.find(_REF_OPEN, label_start)
        if label_end < 0 or (0 <= next_ref < label_end):
            # A ref with no close. At the very end the output was cut inside the label, so the
            # fragment is a label, not content; before another ref the tag is garbled and the text
            # after it is kept as content.
            stop = len(text) if next_ref < 0 else next_ref
            warnings.append(f"{where}: unclosed {_REF_OPEN} ({text[label_start:stop].strip()[:40]!r})")
            if next_ref >= 0:
                add("text", [], text[label_start:stop], keep_empty=False)
            pos = next_ref
            continue
        label = text[label_start:label_end].strip() or "text"
        cursor = label_end + len(_REF_CLOSE)
        next_ref = text.find(_REF_OPEN, cursor)
        stop = len(text) if next_ref < 0 else next_ref
        boxes: list[Box] = []
        if text.startswith(_DET_OPEN, cursor):
            det_start = cursor + len(_DET_OPEN)
            det_end = text.find(_DET_CLOSE, det_start, stop)
            if det_end < 0:
                # Keep the boxes that are complete (up to the last "]"). At the end of the output the
                # rest is a box cut off by truncation; before another ref it is the block's content.
                raw = text[det_start:stop]
                complete = raw[: raw.rfind("]") + 1]
                if next_ref < 0:
                    warnings.append(
                        f"{where}: unclosed {_DET_OPEN}, output truncated inside the boxes; "
                        f"dropped incomplete {raw[len(complete) :].strip()[:40]!r}"
                    )
                    cursor = stop
                else:
                    warnings.append(f"{where}: unclosed {_DET_OPEN}")
                    cursor = det_start + len(complete)
                boxes = _parse_boxes(complete, where, warnings) if complete else []
            else:
                boxes = _parse_boxes(text[det_start:det_end], where, warnings)
                cursor = det_end + len(_DET_CLOSE)
        else:
            warnings.append(f"{where}: {label!r} has no {_DET_OPEN} boxes")
        add(label, boxes, text[cursor:stop])
        pos = next_ref
    return ParsedPage(blocks, warnings)


def strip_markup(text: str) -> str:
    """Turn any model output into plain Markdown: drop EOS, ref/det headers and stray tags, keep content.

    Meant for Free-OCR output (no tags) and as a fallback when a grounded page cannot be used.
    """
    text, _ = strip_eos(text)
    # A full header (label + boxes) is layout, not content; a lone ref (locate answers) keeps its words.
    text = re.sub(r"<\|ref\|>[^<]*<\|/ref\|>\s*<\|det\|>.*?(?:<\|/det\|>|$)", "", text, flags=re.DOTALL)
    text = _TAG_RE.sub("", text)
    text = _clean_content(text)
    # Hard-break spaces at a paragraph's end mean nothing; runs of blank lines become one.
    text = re.sub(r"[ \t]+(?=\n[ \t]*\n)", "", text)
    return re.sub(r"\n[ \t]*\n(?:[ \t]*\n)*", "\n\n", text)


class _TableParser(HTMLParser):
    """Collect the first table's rows and cells; tolerant of omitted end tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[Cell]] = []
        self.found = False
        self._depth = 0  # nesting depth of <table>; only depth 1 is structure
        self._done = False
        self._row: list[Cell] | None = None
        self._cell: tuple[list[str], int, int] | None = None

    @staticmethod
    def _span(value: str | None) -> int:
        try:
            return min(max(int(value or "1"), 1), MAX_SPAN)
        except ValueError:
            return 1

    def _close_cell(self) -> None:
        if self._cell is not None and self._row is not None:
            parts, rowspan, colspan = self._cell
            self._row.append(Cell(" ".join("".join(parts).split()), rowspan, colspan))
        self._cell = None

    def _close_row(self) -> None:
        self._close_cell()
        if self._row is not None:
            self.rows.append(self._row)
        self._row = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._done:
            return
        if self._cell is not None and tag in _BREAK_TAGS:
            self._cell[0].append(" ")  # keep words of nested blocks/lines apart
        if tag == "table":
            self._depth += 1
            self.found = True
        elif self._depth != 1:
            return
        elif tag == "tr":
            self._close_row()
            self._row = []
        elif tag in ("td", "th"):
            self._close_cell()
            if self._row is None:  # a cell with no <tr> opens a row implicitly
                self._row = []
            a = dict(attrs)
            self._cell = ([], self._span(a.get("rowspan")), self._span(a.get("colspan")))

    def handle_endtag(self, tag: str) -> None:
        if self._done:
            return
        if tag == "table" and self._depth:
            self._depth -= 1
            if self._depth == 0:
                self._close_row()
                self._done = True
        elif self._depth != 1:
            return
        elif tag in ("td", "th"):
            self._close_cell()
        elif tag == "tr":
            self._close_row()

    def handle_data(self, data: str) -> None:
        if self._cell is not None and not self._done:
            self._cell[0].append(data)

    def finish(self) -> None:
        """Flush a table the output left open (truncated generation)."""
        self.close()
        if not self._done:
            self._close_row()


def parse_html_table(html: str) -> Table | None:
    """Parse the first HTML table in ``html`` with the standard-library parser.

    Missing ``</td>``/``</tr>``/``</table>`` are tolerated; ``rowspan``/``colspan`` are kept on the cells
    (bad values become 1). Nested tables contribute their text to the enclosing cell.

    Returns:
        The table, or None when ``html`` has no ``<table>``.
    """
    parser = _TableParser()
    parser.feed(html)
    parser.finish()
    if not parser.found:
        return None
    return Table([row for row in parser.rows if row] if parser.rows else [])
