"""The Markdown output: each page's blocks in reading order, figures linked to their crops.

Rules (README, "What the model writes and what deepocr makes of it"):
- ``\\( \\)`` becomes ``$ $`` and ``\\[ \\]`` becomes ``$$ $$`` (a block that is one display formula gets
  ``$$`` on lines of their own); a ``$`` of the text before a digit (a price) is escaped as ``\\$``.
- Trailing spaces are dropped, runs of blank lines become one; the text itself (CJK included) is untouched.
- A title/sub-title is an ATX heading of its block's ``level``.
- A table is written as clean HTML rebuilt from its parsed cells (spans kept), so a table the model left open
  cannot swallow the Markdown after it; its caption sits right before it (or after, when the caption was
  below the table on the page).
- An image is its crop link(s) with a short alt text, then what deep parsing made of it (a chart's table, a
  molecule, a geometry dict, or a description as visible paragraphs), then its caption.
- ``<center>`` leaves no HTML: the block's ``align`` is in the JSON only.
- A loop cut from the output leaves a visible note after the block that keeps the one copy.
"""

from __future__ import annotations

import html
import os
import re
from typing import Any
from urllib.parse import quote

from deepocr_cli.outputs.parse import Block, Table
from deepocr_cli.outputs.results import DocResult, PageResult

# Inline \( \) or display \[ \]; a formula never contains its own closing delimiter.
_MATH_RE = re.compile(r"\\\(((?:(?!\\\)).)+?)\\\)|\\\[((?:(?!\\\]).)+?)\\\]", re.DOTALL)
_PRICE_RE = re.compile(r"(?<!\\)\$(?=\d)")
_BR_RE = re.compile(r"[ \t]*<br\s*/?>[ \t]*\n?", re.IGNORECASE)
_BR_EDGE_RE = re.compile(r"^(?:\s*<br\s*/?>)+|(?:<br\s*/?>\s*)+$", re.IGNORECASE)
_BLANK_RUN_RE = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)*")
#: Block-level HTML tags (CommonMark's HTML-block names): outside a parsed table they would open a raw HTML block
#: that swallows the text after them (the model's <td>/<tr> tokens leaking into text, a stray <div>).
_STRAY_BLOCK_TAG_RE = re.compile(
    r"</?(?:address|article|aside|blockquote|body|caption|center|col|colgroup|dd|details|dialog|dir|div|dl|dt|"
    r"fieldset|figcaption|figure|footer|form|frame|frameset|h[1-6]|head|header|hr|html|iframe|legend|li|link|main|"
    r"menu|menuitem|nav|noframes|ol|optgroup|option|p|param|search|section|summary|table|tbody|td|tfoot|th|thead|"
    r"title|tr|track|ul)(?=[\s/>])[^<>]*>",
    re.IGNORECASE,
)
_HASHES_RE = re.compile(r"^#{1,6}[ \t]+")
HEADING_LABELS = ("title", "sub_title")
_UNIT_DET_RE = re.compile(r"<\|det\|>.*?(?:<\|/det\|>|$)|<\|ref\|>[^<]{0,40}<\|/ref\|>")
_UNIT_MARKUP_RE = re.compile(r"<[^<>]*>|<\|[^|]*\|>|\[\[[\d,\s\[\]]*\]\]")


def _math_inner(text: str) -> str:
    return re.sub(r"\n[ \t]*\n+", "\n", text.strip())


def markdown_text(text: str) -> str:
    """A block's text as Markdown: math delimiters normalised, prices escaped, whitespace tidied.

    A paragraph that is one display formula gets ``$$`` lines of its own; ``<br>`` becomes a hard break.
    """
    text = "\n".join(line.rstrip() for line in text.strip().splitlines())
    text = _STRAY_BLOCK_TAG_RE.sub(" ", text) if "<" in text else text
    # A blank line inside a formula would split it into two paragraphs and leave its delimiters unmatched.
    text = _MATH_RE.sub(lambda m: re.sub(r"\n[ \t]*\n+", "\n", m.group()), text)
    text = _BR_RE.sub("\\\n", _BR_EDGE_RE.sub("", text).strip())
    paragraphs = _BLANK_RUN_RE.split(text)
    if len(paragraphs) > 1:
        return "\n\n".join(p for p in (markdown_text(p) for p in paragraphs) if p)
    whole = _MATH_RE.fullmatch(text.strip())
    if whole and whole.group(2) is not None:
        return f"$$\n{_math_inner(whole.group(2))}\n$$"
    out: list[str] = []
    pos = 0
    for m in _MATH_RE.finditer(text):
        out.append(_plain(text[pos : m.start()]))
        out.append(f"${_math_inner(m[1])}$" if m[1] is not None else f"$${_math_inner(m[2])}$$")
        pos = m.end()
    out.append(_plain(text[pos:]))
    return _BLANK_RUN_RE.sub("\n\n", "".join(out)).strip()


def _plain(text: str) -> str:
    """Text outside math: a price's ``$`` escaped; ``<|``, ``|>`` and ``<!`` written with entities, so that no
    text can pass for a grounding tag or open an HTML comment that hides what follows."""
    return _PRICE_RE.sub(r"\\$", text).replace("<|", "&lt;|").replace("|>", "|&gt;").replace("<!", "&lt;!")


def _cell(text: str) -> str:
    out: list[str] = []
    pos = 0
    for m in _MATH_RE.finditer(text):
        out.append(_plain_cell(text[pos : m.start()]))
        inner = html.escape(_math_inner(m[1] if m[1] is not None else m[2]), quote=False)
        out.append(f"${inner}$" if m[1] is not None else f"$${inner}$$")
        pos = m.end()
    out.append(_plain_cell(text[pos:]))
    return "".join(out)


def _plain_cell(text: str) -> str:
    """Cell text outside math: HTML-escaped, a price's ``$`` as an entity so no renderer reads math."""
    return _PRICE_RE.sub("&#36;", html.escape(text, quote=False))


def table_html(table: Table) -> str:
    """The table as one line of well-formed HTML (CommonMark keeps an HTML block until a blank line)."""
    rows = []
    for row in table.rows:
        cells = []
        for c in row:
            attrs = (f' rowspan="{c.rowspan}"' if c.rowspan > 1 else "") + (
                f' colspan="{c.colspan}"' if c.colspan > 1 else ""
            )
            cells.append(f"<td{attrs}>{_cell(c.text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return "<table>" + "".join(rows) + "</table>"


def link_target(path: str) -> str:
    """A relative file path as a Markdown link destination that CommonMark resolves to that file whatever its
    name holds (spaces, parentheses, ``#``, ``?``, ``%``, brackets, non-ASCII): every byte outside the URL-safe
    set is percent-encoded (UTF-8), ``/`` kept. A non-UTF-8 name's undecodable bytes (surrogate escapes) are
    encoded as the bytes they stand for, so the link still resolves to the file."""
    return quote(os.fsencode(path), safe="/")


def image_link(alt: str | None, link: str) -> str:
    """``![alt](link)`` with an alt text that cannot end the link or pass for a tag, and a link that resolves to
    the crop whatever its file name (`link_target`)."""
    text = " ".join((alt or "").replace("[", "(").replace("]", ")").split())
    return f"![{_plain(text)}]({link_target(link)})"


def _heading(block: Block) -> str:
    hashes = _HASHES_RE.match(block.content)
    level = block.level or (len(hashes.group().strip()) if hashes else 1 if block.label == "title" else 2)
    text = " ".join(markdown_text(_HASHES_RE.sub("", block.content)).split())
    return f"{'#' * level} {text}" if text else ""


def _figure(block: Block) -> list[str]:
    figure: Any = block.figure
    alt = getattr(figure, "alt_text", None) if figure is not None else None
    parts = [image_link(alt, link) for link in block.image_paths or filter(None, [block.image_path])]
    figure_md = figure.markdown().strip() if figure is not None else ""
    if figure_md:
        parts.append(figure_md)
    if block.content:
        parts.append(markdown_text(block.content))
    return parts


def block_markdown(block: Block) -> list[str]:
    """The Markdown paragraphs of one block on its own (captions are placed by `blocks_markdown`)."""
    if block.label in HEADING_LABELS:
        return [h] if (h := _heading(block)) else []
    if block.label == "image":
        return _figure(block)
    if block.table is not None:
        return [table_html(block.table)] if block.table.rows else []
    return [markdown_text(block.content)] if block.content.strip() else []


def loop_note(record: dict) -> str:
    """The visible note left where a loop was cut."""
    words = _UNIT_MARKUP_RE.sub(" ", _UNIT_DET_RE.sub(" ", record["unit"]))
    words = " ".join(words.replace("|", " ").split())
    unit = words if len(words) <= 60 else words[:57] + "..."
    unit = unit.replace("\\", "\\\\").replace("`", "'").replace("<", "&lt;").replace("*", "\\*").replace("_", "\\_")
    kind = record.get("kind", "exact")
    if kind == "count":
        what = f"the model kept counting ({unit}, {record['copies']} numbers); only the first is kept."
    elif kind == "drift":
        what = (f"the model repeated this {record['copies']} times with small changes (“{unit}”); "
                "the first time is kept.")
    else:
        what = f"the model repeated this {record['copies']} times (“{unit}”); one copy is kept."
    return f"> **deepocr:** {what} The full output is in the JSON `raw_text`."


def blocks_markdown(blocks: list[Block], repetition: list[dict] | None = None) -> list[str]:
    """Markdown paragraphs of a page's blocks in reading order, captions next to what they caption."""
    notes: dict[int | None, list[str]] = {}
    for record in repetition or []:
        notes.setdefault(record.get("block"), []).append(loop_note(record))
    by_index = {b.index: b for b in blocks}
    parts: list[str] = list(notes.get(None, []))
    for block in blocks:
        if block.caption_of is not None and block.caption_of in by_index:
            continue  # written with its table or image
        caption = by_index.get(block.caption) if block.caption is not None else None
        before = caption is not None and _is_above(caption, block)
        if caption is not None and before:
            parts.extend(block_markdown(caption))
        parts.extend(block_markdown(block))
        if caption is not None and not before:
            parts.extend(block_markdown(caption))
        for b in (block, caption):
            if b is not None:
                parts.extend(notes.get(b.index, []))
    return [p for p in parts if p]


def _is_above(caption: Block, target: Block) -> bool:
    """Whether a caption goes before its target: by the boxes when both have one, else by reading order."""
    if caption.boxes and target.boxes:
        return caption.boxes[0][1] < target.boxes[0][1]
    return caption.index < target.index


def _comment(text: str) -> str:
    """An HTML comment that cannot be closed early by its text."""
    return "<!-- " + " ".join(text.replace("--", "- -").split()) + " -->"


def _page_markdown(page: PageResult) -> list[str]:
    number = page.index + 1
    parts = [f"<!-- page {number} -->"]
    if page.error is not None:
        parts.append(_comment(f"deepocr: page {number} failed at {page.error.stage}: {page.error.message}"))
    if page.truncated:
        parts.append(
            _comment(
                f"deepocr: page {number} is truncated: generation stopped without end-of-sentence"
                + (f" after {page.generated_tokens} tokens" if page.generated_tokens else "")
                + "; the text below may be incomplete or repetitive"
            )
        )
    parts.extend(blocks_markdown(page.blocks, page.repetition))
    return parts


def render_markdown(doc: DocResult) -> str:
    """Render a document as Markdown.

    Each page starts with a ``<!-- page N -->`` line and pages are separated by a horizontal rule;
    truncated and failed pages carry an explanatory comment; blocks follow the rules above.
    """
    chunks = ["\n\n".join(_page_markdown(page)) for page in doc.pages]
    text = "\n\n---\n\n".join(chunks)
    return _BLANK_RUN_RE.sub("\n\n", text).strip() + "\n"
