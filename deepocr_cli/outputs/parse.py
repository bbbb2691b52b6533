"""Parse DeepSeek-OCR's grounded markup (ref/det tags, HTML tables) into blocks, without ever evaluating it."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from deepocr_cli.outputs.tables import MAX_SPAN, Cell, Table, parse_html_table

log = logging.getLogger(__name__)

__all__ = ["MAX_SPAN", "Block", "Box", "Cell", "ParsedPage", "Table", "parse_grounded", "parse_html_table",
           "strip_eos", "strip_markup", "to_pixels"]

#: End-of-sentence string (id 1). The PDF runner keeps it in the output, and its absence means the
#: generation hit the token limit (facts §4.2, §5.2).
EOS = "<｜end▁of▁sentence｜>"
#: Other special strings that may leak into decoded text and are never content (facts §4.2).
_STRAY_SPECIALS = ("<｜begin▁of▁sentence｜>", "<｜▁pad▁｜>", "<|grounding|>", "<image>")

#: Largest model-space coordinate. The paper speaks of "1000 bins", but upstream de-normalises with
#: ``int(v / 999 * W)``, so 999 maps to the far edge; we follow the code the model was tuned against.
COORD_MAX = 999

_REF_OPEN, _REF_CLOSE = "<|ref|>", "<|/ref|>"
_DET_OPEN, _DET_CLOSE = "<|det|>", "<|/det|>"
#: Any grounding-style special tag (``<|User|>``, ``<|grounding|>``...): never content.
_ANY_TAG_RE = re.compile(r"<\|/?[A-Za-z_]{1,20}\|>")
#: What is left of a tag the model broke off: ``<|de``, ``<|ref``, ``det|>``.
_BROKEN_TAG_RE = re.compile(r"<\|/?[A-Za-z_]{0,20}\|?|(?<![\w|])/?(?:ref|det)\|>")
#: Strings the output may stop in the middle of (the token limit): a proper prefix of one at the very end is dropped.
_TAIL_TAGS = ("<|ref|>", "<|/ref|>", "<|det|>", "<|/det|>", "<|grounding|>", "<｜end▁of▁sentence｜>")
#: A det span left in content (a det with no ref before it is split off earlier; this catches the rest).
_DET_SPAN_RE = re.compile(r"<\|det\|>[^<]{0,400}?(?:<\|/det\|>|(?=<)|$)")
#: A coordinate list the model wrote without (or with broken) det tags: ``[[37, 48, 279, 140]]``.
_COORDS_RE = re.compile(r"\[\s*\[\s*-?\d+(?:\s*,\s*-?\d+){2,5}\s*\](?:\s*,\s*\[[^\[\]]{0,60}\])*\s*\]?")
#: Tags the model garbles: ``</|det|>``, ``</|/ref|>``, ``<|/ref>``, ``<ref|>``.
_GARBLED_TAG_RE = re.compile(r"</\|/?(ref|det)\|>|<\|(/?)(ref|det)>|<(/?)(ref|det)\|>")
#: Layout labels of the released model (facts §5.1). Other identifier-shaped labels are kept (v2 merged
#: some); anything else inside a ref is text the model put there.
KNOWN_LABELS = frozenset(
    {"title", "sub_title", "text", "image", "image_caption", "table", "table_caption", "table_footnote",
     "equation"}
)
_LABEL_RE = re.compile(r"[a-z][a-z_]{1,30}")
_INNER_LIST_RE = re.compile(r"\[([^\[\]]*)\]")
_INT_RE = re.compile(r"[+-]?\d+")
_CENTER_RE = re.compile(r"</?center>", re.IGNORECASE)
# Upstream rewrites these two macros because common Markdown math renderers lack them (facts §5.2).
_LATEX_FIXES = ((r"\coloneqq", ":="), (r"\eqqcolon", "=:"))


Box = tuple[int, int, int, int]


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
    level: int | None = None
    align: str | None = None
    caption: int | None = None
    caption_of: int | None = None


@dataclass
class ParsedPage:
    """Blocks of one page plus everything that looked wrong while parsing it.

    Attributes:
        blocks: the blocks in reading order.
        warnings: one line per repair.
        spans: for each block, the ``(start, end)`` character span of the text it came from.
    """

    blocks: list[Block]
    warnings: list[str]
    spans: list[tuple[int, int]] = field(default_factory=list, compare=False)


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
    for special in (EOS, *_STRAY_SPECIALS):
        text = text.replace(special, "")
    return text.strip()


def _remove_leaks(text: str) -> tuple[str, list[str]]:
    """Remove det spans, bare coordinate lists and special tags from content; say what was removed."""
    removed: list[str] = []
    for name, pattern in (("boxes", _DET_SPAN_RE), ("coordinate list", _COORDS_RE), ("tag", _ANY_TAG_RE),
                          ("broken tag", _BROKEN_TAG_RE)):
        found = pattern.findall(text)
        if found:
            removed.extend(f"{name} {f.strip()[:40]!r}" for f in found)
            text = pattern.sub("\x00", text)
    # One space where something was cut out of a line, nothing at a line's edge.
    text = re.sub(r"[ \t]*\x00(?:[ \t]*\x00)*[ \t]*", " ", text) if removed else text
    text = re.sub(r"^ | $", "", text, flags=re.M) if removed else text
    return text.strip(), removed


def _drop_cut_tag(text: str, warnings: list[str]) -> str:
    """Remove a tag the output stopped in the middle of (``...<|de`` at the very end)."""
    cut = text.rfind("<", max(0, len(text) - 24))
    if cut >= 0 and any(tag.startswith(text[cut:]) and tag != text[cut:] for tag in _TAIL_TAGS):
        warnings.append(f"output ends inside a tag; dropped {text[cut:]!r}")
        return text[:cut]
    return text


def _mend_tags(text: str) -> str:
    """``</|det|>`` -> ``<|/det|>``, ``<|ref>`` -> ``<|ref|>`` and the like."""
    return _GARBLED_TAG_RE.sub(lambda m: f"<|/{m[1]}|>" if m[1] else f"<|{m[2] or m[4]}{m[3] or m[5]}|>", text)


def _repair_markup(text: str, warnings: list[str]) -> str:
    """Make the tag structure parseable: mend garbled tags, pair lone closes and lone dets.

    A ``<|/ref|>`` with no open ref takes the label word just before it when that is a known label, else it
    is dropped; a ``<|det|>`` not right after a ``<|/ref|>`` gets an (internal) orphan ref, read as a text
    block with those boxes.
    """
    mended = _mend_tags(text)
    if mended != text:
        warnings.append("repaired malformed grounding tags")
        text = mended
    out: list[str] = []
    pos = 0
    open_ref = False
    for m in re.finditer(r"<\|(/?)(ref|det)\|>", text):
        closing, kind = m[1] == "/", m[2]
        out.append(text[pos : m.start()])
        pos = m.end()
        if kind == "ref" and not closing:
            open_ref = True
        elif kind == "ref":
            if not open_ref:
                before = "".join(out)
                word = re.search(r"([a-z][a-z_]{1,30})\s*$", before)
                if word and word[1] in KNOWN_LABELS:
                    out[:] = [before[: word.start()], _REF_OPEN, word[1]]
                    warnings.append(f"{_REF_CLOSE} without {_REF_OPEN}: took {word[1]!r} as the label")
                else:
                    warnings.append(f"dropped a {_REF_CLOSE} without {_REF_OPEN}")
                    continue
            open_ref = False
        elif not closing and open_ref:
            warnings.append(f"{_REF_OPEN} closed by {_DET_OPEN}: added the missing {_REF_CLOSE}")
            out.append(_REF_CLOSE)
            open_ref = False
        elif not closing and not "".join(out[-2:]).rstrip().endswith(_REF_CLOSE):
            out.append(_REF_OPEN + _ORPHAN + _REF_CLOSE)
        out.append(m.group())
    out.append(text[pos:])
    return "".join(out)


#: Internal label of a det that had no ref (never appears in output).
_ORPHAN = "\x00orphan"


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
    raises on bad markup: malformed or truncated tags keep what parses and add a warning; no tag, box span
    or coordinate list is left in any block's content.

    Args:
        text: raw model output, special tokens kept; a trailing EOS string is removed.
        width: pixel width of the page the model saw (for ``boxes_px``).
        height: pixel height of that page.

    Returns:
        The blocks in reading order, the parse warnings and each block's source span.
    """
    text, _ = strip_eos(text)
    warnings: list[str] = []
    blocks: list[Block] = []
    spans: list[tuple[int, int]] = []
    text = _repair_markup(_drop_cut_tag(text, warnings), warnings)

    def add(label: str, boxes: list[Box], content: str, span: tuple[int, int], keep_empty: bool = True) -> None:
        cleaned, removed = _remove_leaks(_clean_content(content))
        if removed:
            warnings.append(f"block {len(blocks)}: removed {', '.join(removed)} from the text")
        if not keep_empty and not cleaned:
            return
        # <center> is layout, not content: it becomes the block's alignment.
        align = "center" if _CENTER_RE.search(cleaned) else None
        cleaned = _CENTER_RE.sub("", cleaned).strip() if align else cleaned
        table = parse_html_table(cleaned) if "<table" in cleaned.lower() else None
        px = [to_pixels(b, width, height) for b in boxes]
        blocks.append(Block(len(blocks), label, boxes, px, cleaned, table, align=align))
        spans.append(span)

    pos = text.find(_REF_OPEN)
    add("text", [], text if pos < 0 else text[:pos], (0, len(text) if pos < 0 else pos), keep_empty=False)
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
                add("text", [], text[label_start:stop], (pos, stop), keep_empty=False)
            pos = next_ref
            continue
        label, prefix = _read_label(text[label_start:label_end], where, warnings)
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
        elif (bare := _COORDS_RE.match(text, cursor + len(text[cursor:stop]) - len(text[cursor:stop].lstrip()))):
            warnings.append(f"{where}: boxes written without {_DET_OPEN} tags")
            boxes = _parse_boxes(bare.group(), where, warnings)
            cursor = bare.end()
        elif label != _ORPHAN:
            warnings.append(f"{where}: {label!r} has no {_DET_OPEN} boxes")
        if label == _ORPHAN:
            warnings.append(f"{where}: {_DET_OPEN} with no {_REF_OPEN} before it, read as a text block")
            label = "text"
        add(label, boxes, prefix + text[cursor:stop], (pos, stop))
        pos = next_ref
    return ParsedPage(blocks, warnings, spans)


def _read_label(raw: str, where: str, warnings: list[str]) -> tuple[str, str]:
    """The block label, and text to put before the content when the model wrote words inside the ref."""
    label = raw.strip()
    if label == _ORPHAN:
        return label, ""
    if not label:
        warnings.append(f"{where}: empty label, read as text")
        return "text", ""
    if _LABEL_RE.fullmatch(label):
        if label not in KNOWN_LABELS:
            warnings.append(f"{where}: unknown label {label!r}, rendered as text")
        return label, ""
    warnings.append(f"{where}: {label[:40]!r} is not a layout label; kept as text")
    return "text", label + "\n"


def strip_markup(text: str) -> str:
    """Turn any model output into plain Markdown: drop EOS, ref/det headers and stray tags, keep content.

    Meant for Free-OCR output (no tags) and as a fallback when a grounded page cannot be used.
    """
    text, _ = strip_eos(text)
    text = _mend_tags(_drop_cut_tag(text, []))
    # A full header (label + boxes) is layout, not content; a lone ref (locate answers) keeps its words.
    text = re.sub(r"<\|ref\|>[^<]*<\|/ref\|>\s*<\|det\|>.*?(?:<\|/det\|>|$)", "", text, flags=re.DOTALL)
    text, _ = _remove_leaks(_clean_content(text))
    text = _CENTER_RE.sub("", text)
    # Hard-break spaces at a paragraph's end mean nothing; runs of blank lines become one.
    text = re.sub(r"[ \t]+(?=\n[ \t]*\n)", "", text)
    return re.sub(r"\n[ \t]*\n(?:[ \t]*\n)*", "\n\n", text)
