"""Turn the parser's raw blocks into what the page means: tables in table blocks, captions tied to what they
caption, heading levels, alignment.

The released model very often writes an empty ``table`` block followed by a ``table_caption`` block whose content
is the caption text *and* the ``<table>`` (sometimes the other way round, sometimes the table block holds the
caption text). Here every table ends up in a ``table`` block, every caption text in a caption block, and each
caption is linked to its table or image (``caption``/``caption_of``). Nothing is dropped: text that has no caption
block to go to gets one. Titles and sub-titles get a heading level (``<center>`` is already the parser's ``align``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from deepocr_cli.outputs.parse import Block

#: Caption label -> the label of what it captions.
CAPTION_TARGET = {"table_caption": "table", "image_caption": "image"}
#: Farthest a caption may sit from its table or image, in blocks.
MAX_CAPTION_DISTANCE = 3
#: Two headings whose line heights differ by less than this factor are the same level.
SAME_LEVEL_RATIO = 1.2
_TABLE_SPAN_RE = re.compile(r"<table\b.*?(?:</table>|$)", re.IGNORECASE | re.DOTALL)
_HASHES_RE = re.compile(r"^(#{1,6})[ \t]+")


def assemble(blocks: list[Block], warnings: list[str]) -> list[Block]:
    """Apply every page-level rule to the parser's blocks (in place where possible).

    Args:
        blocks: the parser's blocks, in reading order.
        warnings: the page's warnings; each repair adds one line.

    Returns:
        The blocks, reindexed 0..n-1 (a block may have been added for text that had nowhere to go).
    """
    blocks, moved = _place_tables(blocks, warnings)
    _place_caption_text(blocks, warnings)
    for i, block in enumerate(blocks):
        block.index = i
    _link_captions(blocks, moved)
    _heading_levels(blocks)
    return blocks


def _split_table(content: str) -> tuple[str, str]:
    """(the first ``<table>...</table>``, the text around it)."""
    m = _TABLE_SPAN_RE.search(content)
    if m is None:
        return "", content
    text = "\n\n".join(part.strip() for part in (content[: m.start()], content[m.end() :]) if part.strip())
    return m.group().strip(), text


def _empty(block: Block) -> bool:
    return not block.content.strip() and block.table is None


def _near(blocks: list[Block], i: int, want: Callable[[Block], bool]) -> int | None:
    """Index of the nearest block to ``i`` (previous first) that satisfies ``want``."""
    for d in range(1, MAX_CAPTION_DISTANCE + 1):
        for j in (i - d, i + d):
            if 0 <= j < len(blocks) and want(blocks[j]):
                return j
    return None


def _place_tables(blocks: list[Block], warnings: list[str]) -> tuple[list[Block], dict[int, int]]:
    """Move each table into a table block. Returns the blocks and {table block id: caption block id}."""
    out = list(blocks)
    moved: dict[int, int] = {}  # id(table block) -> id(caption block) it came from
    for block in list(out):
        if block.table is None:
            continue
        html, text = _split_table(block.content)
        i = out.index(block)
        if block.label == "table":
            block.content = html
            if text:
                # Caption text in the table block: give it to an empty caption block, or to a new one.
                j = _near(out, i, lambda b: b.label == "table_caption" and _empty(b))
                if j is None:
                    new = Block(0, "table_caption", [], [], text)
                    out.insert(i, new)
                    moved[id(block)] = id(new)
                    warnings.append(f"block {i}: caption text in the table block; moved to a new caption block")
                else:
                    out[j].content = text
                    moved[id(block)] = id(out[j])
                    warnings.append(f"block {i}: caption text in the table block; moved to caption block {j}")
            continue
        j = _near(out, i, lambda b: b.label == "table" and _empty(b))
        if j is not None:
            target = out[j]
            warnings.append(f"block {i}: {block.label} held the table of table block {j}; moved it there")
        elif not text:
            warnings.append(f"block {i}: a table in a {block.label} block; labelled it table")
            block.label, block.content = "table", html
            continue
        else:
            target = Block(0, "table", [], [], "")
            out.insert(i + 1, target)
            warnings.append(f"block {i}: a table inside the text of a {block.label} block; split into a new table block")
        target.content, target.table = html, block.table
        block.content, block.table = text, None
        if block.label in CAPTION_TARGET:
            moved[id(target)] = id(block)
    for i, block in enumerate(out):
        if block.label == "table" and block.table is None:
            warnings.append(f"block {i}: table block without a table")
    return out, moved


def _place_caption_text(blocks: list[Block], warnings: list[str]) -> None:
    """Text written in an image block goes to an empty image caption beside it, when there is one."""
    for i, block in enumerate(blocks):
        if block.label != "image" or not block.content.strip():
            continue
        j = _near(blocks, i, lambda b: b.label == "image_caption" and _empty(b))
        if j is not None:
            blocks[j].content, block.content = block.content, ""
            blocks[j].align = blocks[j].align or block.align
            warnings.append(f"block {i}: caption text in the image block; moved to caption block {j}")


def _gap(a: Block, b: Block) -> int:
    """Distance between two blocks' first boxes: horizontal plus vertical gap (0 when either has none)."""
    if not a.boxes or not b.boxes:
        return 0
    (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = a.boxes[0], b.boxes[0]
    return max(0, by1 - ay2, ay1 - by2) + max(0, bx1 - ax2, ax1 - bx2)


def _link_captions(blocks: list[Block], moved: dict[int, int]) -> None:
    by_id = {id(b): b for b in blocks}
    for target in blocks:  # captions that brought the table, or received the table block's text, first
        caption = by_id.get(moved.get(id(target), -1))
        if caption is not None:
            target.caption, caption.caption_of = caption.index, target.index
    for cap in blocks:
        kind = CAPTION_TARGET.get(cap.label)
        if kind is None or cap.caption_of is not None or not cap.content.strip():
            continue
        options = [
            b for b in blocks
            if b.label == kind and b.caption is None and abs(b.index - cap.index) <= MAX_CAPTION_DISTANCE
        ]
        if options:
            best = min(options, key=lambda b: (abs(b.index - cap.index), _gap(cap, b), b.index < cap.index))
            best.caption, cap.caption_of = cap.index, best.index


def _line_height(block: Block) -> float | None:
    if not block.boxes:
        return None
    x1, y1, x2, y2 = block.boxes[0]
    lines = max(1, block.content.count("\n") + 1)
    return (y2 - y1) / lines


def _heading_levels(blocks: list[Block]) -> None:
    """Levels of title/sub_title blocks: the model's own ``#`` when present, else from label and size.

    A title is level 1. A sub-title without ``#`` takes the level of the explicitly marked heading whose line
    height is closest (at least 2); with no marked heading on the page, sub-titles are ranked by line height:
    the tallest are level 2, each clearly smaller size one level deeper (at most 4).
    """
    heads = [b for b in blocks if b.label in ("title", "sub_title")]
    marked: list[tuple[float | None, int]] = []
    for b in heads:
        m = _HASHES_RE.match(b.content)
        if m:
            b.level = len(m[1])
            marked.append((_line_height(b), b.level))
        elif b.label == "title":
            b.level = 1
    plain = [b for b in heads if b.level is None]
    sized = [(h, lvl) for h, lvl in marked if h]
    if sized:
        for b in plain:
            h = _line_height(b)
            if not h:
                b.level = 2
                continue
            near_h, lvl = min(sized, key=lambda s: abs(s[0] / h - 1))
            # Clearly smaller than the nearest marked heading: one level below it; clearly bigger: above.
            lvl += (near_h / h >= SAME_LEVEL_RATIO) - (h / near_h >= SAME_LEVEL_RATIO)
            b.level = min(max(2, lvl), 6)
        return
    heights = sorted({round(h, 1) for b in plain if (h := _line_height(b))}, reverse=True)
    ranks: list[float] = []
    for h in heights:
        if not ranks or ranks[-1] / h >= SAME_LEVEL_RATIO:
            ranks.append(h)
    for b in plain:
        h = _line_height(b)
        rank = next((k for k, r in enumerate(ranks) if h and r / h < SAME_LEVEL_RATIO), 0) if h else 0
        b.level = min(2 + rank, 4)
