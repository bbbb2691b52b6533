"""HTML tables as DeepSeek-OCR writes them (``<table><tr><td rowspan=..>``, end tags often missing), read with the
standard-library parser into rows of cells; nothing is evaluated."""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser

#: A span attribute beyond this is a hallucination; clamping it keeps ``Table.grid`` small.
MAX_SPAN = 1000
#: Tags that separate words inside a cell (line breaks, nested tables and blocks).
_BREAK_TAGS = frozenset({"br", "table", "tr", "td", "th", "p", "div", "li"})


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
    # The standard parser raises on a malformed "<![" marked section; model tables never hold one, so it is text.
    html = html.replace("<![", "&lt;![")
    try:
        parser.feed(html)
        parser.finish()
    except (AssertionError, ValueError):  # any other construct the parser refuses: keep what was read
        parser._close_row()
    if not parser.found:
        return None
    return Table([row for row in parser.rows if row] if parser.rows else [])
