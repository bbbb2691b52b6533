"""One page of raw model output -> blocks, warnings and loops: the single path `convert`, `--reparse` and
`deepocr parse` all take."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from deepocr_cli.outputs.assemble import assemble
from deepocr_cli.outputs.parse import Block, parse_grounded, strip_eos, strip_markup
from deepocr_cli.outputs.repetition import cut_loops, find_loops

#: Version of the rules that turn raw output into blocks; the JSON records it, and `--reparse` rewrites
#: outputs made by an older version. Bump it whenever a golden file under tests/data/expected changes.
PARSER_VERSION = 3
TASKS = ("markdown", "free")


@dataclass
class PageParse:
    """What the parser made of one page.

    Attributes:
        blocks: the page's blocks in reading order.
        warnings: repairs made on the way (markup, tables, captions).
        repetition: one dict per loop cut from the output (see `Loop`), with ``block``: the block holding
            the one copy that was kept.
    """

    blocks: list[Block]
    warnings: list[str] = field(default_factory=list)
    repetition: list[dict] = field(default_factory=list)


def read_page(raw: str, width: int, height: int, task: str = "markdown") -> PageParse:
    """Parse one page of model output the way `convert` does.

    Args:
        raw: the model's output (a trailing EOS is ignored).
        width: pixel width of the page the model saw.
        height: its pixel height.
        task: ``markdown`` (grounded layout blocks) or ``free`` (plain OCR text, one block).

    Returns:
        The page's blocks, warnings and repetition records.

    Raises:
        ValueError: an unknown task.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    text, _ = strip_eos(raw)
    loops = find_loops(text)
    kept = cut_loops(text, loops)
    warnings: list[str] = []
    if task == "free":
        content = strip_markup(kept)
        blocks = [Block(index=0, label="text", boxes=[], boxes_px=[], content=content)] if content else []
        spans = [(0, len(kept))] if content else []
    else:
        parsed = parse_grounded(kept, width, height)
        warnings = parsed.warnings
        spans = parsed.spans
        originals = list(parsed.blocks)
        blocks = assemble(parsed.blocks, warnings)
    records = []
    removed = 0
    for loop in loops:
        at = loop.cut[0] - removed  # where the kept copy ends, in the cut text
        removed += loop.cut[1] - loop.cut[0]
        holder = next((k for k, (s, e) in enumerate(spans) if s < at <= e), len(spans) - 1)
        index = None
        if 0 <= holder < len(spans):
            index = holder if task == "free" else _index_after_assembly(originals[holder], blocks)
        index = _check_holder(index, blocks, loop.unit)
        warnings.append(
            f"repetition: {loop.copies} copies of {loop.unit[:60]!r} from character {loop.start}; one kept"
        )
        records.append({**loop.to_json(), "block": index})
    return PageParse(blocks, warnings, records)


_MARKUP_RE = re.compile(r"<\|det\|>.*?(?:<\|/det\|>|$)|<\|ref\|>[^<]{0,40}<\|/ref\|>|<[^<>]*>")


def _plain(text: str) -> str:
    return " ".join(_MARKUP_RE.sub(" ", text).split())


def _check_holder(index: int | None, blocks: list[Block], unit: str) -> int | None:
    """The block that holds the kept copy: the one its position points to when that block holds the copy's
    words (markup repairs before the loop can shift positions), else the first block that does."""
    words = _plain(unit)[:40]
    if not words:
        return index
    if index is not None and index < len(blocks) and words in _plain(blocks[index].content):
        return index
    return next((b.index for b in blocks if words in _plain(b.content)), index)


def _index_after_assembly(block: Block, blocks: list[Block]) -> int | None:
    """Index of a parser block after `assemble` (the same object, reindexed), or None if it was merged."""
    return next((b.index for b in blocks if b is block), None)
