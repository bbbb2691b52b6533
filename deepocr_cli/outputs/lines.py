"""A block's plain text for text layers (PDF, ALTO, txt), and its split into lines and words with estimated boxes.

The model gives one box per block, not per line or word. Text layers need lines and words, so they are
estimated: the number of printed lines is derived from the box's shape and the amount of text (a Latin
glyph is about half as wide as it is tall, a CJK one about as wide), the words are wrapped into that many
lines of balanced width, the lines share the box's height equally and each is stretched to the box's width.
Word boxes then follow from each character's share of its line.
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass

from deepocr_cli.outputs.parse import Block
from deepocr_cli.outputs.results import PageResult

FBox = tuple[float, float, float, float]

#: Advance of a glyph in ems: CJK and other wide characters are square, the rest about half as wide.
WIDE_EM, NARROW_EM = 1.0, 0.5
#: Line pitch over font size: the baseline-to-baseline distance of print is about 1.2 em.
LINE_PITCH = 1.2

_HEADING_RE = re.compile(r"^\s{0,3}#{1,6}\s+")
_QUOTE_RE = re.compile(r"^\s*>\s?")
_IMAGE_RE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK_RE = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_EMPHASIS_RE = re.compile(r"(\*\*|__)(.+?)\1")
_TAG_RE = re.compile(r"<[^>]*>")
_MATH_DELIMS_RE = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$")
_RULE_RE = re.compile(r"^\s*(?:-{3,}|\*{3,}|_{3,})\s*$")


def is_wide(ch: str) -> bool:
    """Whether a character prints about as wide as it is tall (CJK ideographs, kana, hangul, full-width forms)."""
    return unicodedata.east_asian_width(ch) in ("W", "F")


def char_em(ch: str) -> float:
    """Estimated advance of ``ch`` in ems (see `WIDE_EM`, `NARROW_EM`)."""
    return WIDE_EM if is_wide(ch) else NARROW_EM


def text_em(text: str) -> float:
    """Estimated width of ``text`` in ems."""
    return sum(char_em(ch) for ch in text)


def _plain_line(line: str) -> str:
    line = _IMAGE_RE.sub(r"\1", line)
    line = _LINK_RE.sub(r"\1", line)
    line = _HEADING_RE.sub("", line)
    line = _QUOTE_RE.sub("", line)
    line = _EMPHASIS_RE.sub(r"\2", line)
    line = _MATH_DELIMS_RE.sub(" ", line)
    line = html.unescape(_TAG_RE.sub(" ", line))
    return " ".join(line.split())


def _figure_description(block: Block) -> str:
    figure = block.figure
    if figure is None:
        return ""
    data = figure.to_json()  # type: ignore[attr-defined]
    return " ".join(str(data.get("description") or "").split()) if isinstance(data, dict) else ""


def block_text(block: Block) -> str:
    """The plain text a block contributes to a text layer, its own lines separated by ``\\n``.

    Tables give their cells in row order (one line per row); equations their LaTeX source without the
    math delimiters; figures the description deep parsing found (nothing otherwise) plus any text of
    their own; other blocks their Markdown with the markup (headings, emphasis, links, tags) removed.
    """
    if block.table is not None:
        rows = (" ".join(c.text for c in row if c.text) for row in block.table.rows)
        return "\n".join(r for r in rows if r)
    parts: list[str] = []
    if block.label == "image":
        parts.append(_figure_description(block))
    for raw in block.content.splitlines():
        if _RULE_RE.match(raw):
            continue
        parts.append(_plain_line(raw))
    return "\n".join(p for p in parts if p)


def page_text(page: PageResult) -> str:
    """A page's plain text in reading order, one line per block line; empty for a failed page."""
    if page.error is not None:
        return ""
    return "\n".join(t for t in (block_text(b) for b in page.blocks) if t)


@dataclass(frozen=True)
class Word:
    """One word (a run without spaces) and its estimated box, in page pixels."""

    text: str
    box: FBox


@dataclass(frozen=True)
class Line:
    """One estimated printed line: its text, its box (page pixels) and its words."""

    text: str
    box: FBox
    words: tuple[Word, ...]


def _tokens(segment: str) -> list[tuple[str, bool]]:
    """Split into breakable units: words, and single wide characters; each with "a space came before"."""
    out: list[tuple[str, bool]] = []
    for m in re.finditer(r"(\s*)(\S+)", segment):
        space = bool(m.group(1))
        for part in _split_wide(m.group(2)):
            out.append((part, space))
            space = False
    return out


def _split_wide(run: str) -> list[str]:
    """Break a run without spaces at every wide character (CJK has no spaces between words)."""
    parts: list[str] = []
    for ch in run:
        if is_wide(ch) or not parts or is_wide(parts[-1][-1]):
            parts.append(ch)
        else:
            parts[-1] += ch
    return parts


def _wrap(tokens: list[tuple[str, bool]], n_lines: int) -> list[str]:
    """Wrap tokens into ``n_lines`` lines of about equal width, by where each token's middle falls."""
    widths = [text_em(t) + (NARROW_EM if sp else 0.0) for t, sp in tokens]
    total = sum(widths) or 1.0
    lines: list[list[tuple[str, bool]]] = [[] for _ in range(n_lines)]
    acc = 0.0
    for tok, w in zip(tokens, widths, strict=True):
        k = min(n_lines - 1, int((acc + w / 2) / total * n_lines))
        lines[k].append(tok)
        acc += w
    out = []
    for toks in lines:
        if toks:
            out.append("".join((" " if sp and i else "") + t for i, (t, sp) in enumerate(toks)))
    return out


def estimate_line_count(text_width_em: float, box_w: float, box_h: float) -> int:
    """Printed lines that ``text_width_em`` ems of text take in a box, at a line pitch of `LINE_PITCH` em.

    With L lines the font size is ``h / (L * pitch)`` and L lines hold ``L * w / size`` ems, so
    ``L = sqrt(ems * h / (w * pitch))``.
    """
    if box_w <= 0 or box_h <= 0 or text_width_em <= 0:
        return 1
    return max(1, round((text_width_em * box_h / (box_w * LINE_PITCH)) ** 0.5))


def words_of(text: str, box: FBox) -> tuple[Word, ...]:
    """Words of one line, each boxed by its share of the line's estimated width."""
    x0, y0, x1, y1 = box
    total = text_em(text) or 1.0
    scale = (x1 - x0) / total
    words: list[Word] = []
    pos = 0.0
    for m in re.finditer(r"\S+|\s+", text):
        w = text_em(m.group())
        if not m.group().isspace():
            words.append(Word(m.group(), (x0 + pos * scale, y0, x0 + (pos + w) * scale, y1)))
        pos += w
    return tuple(words)


def _split_text(text: str, boxes: list[FBox]) -> list[str]:
    """Share a block's text among its boxes in proportion to their areas, keeping whole hard lines together
    where the text has several and whole words otherwise."""
    if len(boxes) == 1:
        return [text]
    areas = [max(0.0, (b[2] - b[0]) * (b[3] - b[1])) for b in boxes]
    total_area = sum(areas) or 1.0
    hard_lines = text.split("\n")
    units, sep = (hard_lines, "\n") if len(hard_lines) >= len(boxes) else (text.split(), " ")
    weights = [text_em(u) or NARROW_EM for u in units]
    total = sum(weights) or 1.0
    parts: list[list[str]] = [[] for _ in boxes]
    bounds, acc = [], 0.0
    for a in areas:
        acc += a / total_area
        bounds.append(acc)
    acc = 0.0
    for unit, w in zip(units, weights, strict=True):
        mid = (acc + w / 2) / total
        k = next((i for i, b in enumerate(bounds) if mid <= b), len(boxes) - 1)
        parts[k].append(unit)
        acc += w
    return [sep.join(p) for p in parts]


def layout_lines(text: str, boxes: list[FBox]) -> list[Line]:
    """Estimate printed lines and words for a block's text inside its boxes (page pixels).

    Each hard line of ``text`` (``\\n``) gets at least one printed line; the estimated printed lines of a
    box share its height equally and each spans the box's full width.

    Args:
        text: plain text (`block_text`).
        boxes: the block's boxes in reading order; text is shared among several by area.

    Returns:
        Lines top to bottom, box after box; empty when there is no text or no box.
    """
    out: list[Line] = []
    if not text.strip():
        return out
    for part, box in zip(_split_text(text, boxes), boxes, strict=True):
        x0, y0, x1, y1 = box
        if not part.strip() or x1 <= x0 or y1 <= y0:
            continue
        segments = [s for s in part.split("\n") if s.strip()]
        seg_tokens = [_tokens(s) for s in segments]
        ems = [sum(text_em(t) + (NARROW_EM if sp else 0) for t, sp in toks) for toks in seg_tokens]
        n_total = max(estimate_line_count(sum(ems), x1 - x0, y1 - y0), len(segments))
        printed: list[str] = []
        for toks, em in zip(seg_tokens, ems, strict=True):
            share = max(1, min(len(toks), round(n_total * em / (sum(ems) or 1.0))))
            printed.extend(_wrap(toks, share))
        pitch = (y1 - y0) / len(printed)
        for i, line in enumerate(printed):
            lbox = (x0, y0 + i * pitch, x1, y0 + (i + 1) * pitch)
            out.append(Line(line, lbox, words_of(line, lbox)))
    return out


def block_boxes(block: Block, page: PageResult) -> list[FBox]:
    """A block's boxes in page pixels; a block without boxes (Free OCR, text before the first ref) gets the
    whole page, so its text is still searchable."""
    boxes = [tuple(float(v) for v in b) for b in block.boxes_px]
    return boxes or [(0.0, 0.0, float(page.width), float(page.height))]  # type: ignore[return-value]


def page_lines(page: PageResult) -> list[tuple[Block, list[Line]]]:
    """Every block of a page with its estimated lines, in reading order (failed pages have none)."""
    if page.error is not None:
        return []
    return [(b, layout_lines(block_text(b), block_boxes(b, page))) for b in page.blocks]
