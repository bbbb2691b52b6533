"""One check for every Markdown the test suite writes: CommonMark structure, and no model markup left."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from markdown_it import MarkdownIt

_MD = MarkdownIt("commonmark")
#: A box list as the model writes it: ``[[37, 48, 279, 140]]`` or a single ``[37, 48, 279, 140]``.
COORDS_RE = re.compile(r"\[\s*\[?\s*\d+\s*,\s*\d+\s*,\s*\d+\s*,\s*\d+\s*\]")
_VOID = {"br", "img", "hr"}


class _Balance(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag not in _VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> does not close {self.stack[-1:] or 'anything'}")
        else:
            self.stack.pop()


def assert_clean_markdown(md: str) -> None:
    """Fail unless ``md`` reads as intended CommonMark with no grounding markup.

    Checked: no ``<|``/``|>``, no special strings, no raw coordinate list; every HTML block (tables) is
    balanced and self-contained, so it cannot swallow the Markdown after it; every line that looks like an
    ATX heading parses as a heading; every image link on a line of its own parses as an image.
    """
    assert "<|" not in md and "|>" not in md, "grounding tag left in Markdown"
    assert "｜" not in md, "special token string left in Markdown"
    assert not COORDS_RE.search(md), f"coordinate list left in Markdown: {COORDS_RE.search(md)[0]!r}"
    tokens = _MD.parse(md)
    # A heading line (at column 0) outside fenced code must parse as a heading: not swallowed by an HTML block.
    heading_lines = {t.map[0] for t in tokens if t.type == "heading_open" and t.map}
    fenced = {i for t in tokens if t.type == "fence" and t.map for i in range(*t.map)}
    for i, line in enumerate(md.split("\n")):
        if re.match(r"#{1,6}(?:[ \t]|$)", line) and i not in fenced:
            assert i in heading_lines, f"line {i + 1} should be a heading: {line[:80]!r}"
    # A figure link on its own line (as the writer puts every crop) must parse as an image.
    image_lines = {
        i for t in tokens if t.type == "inline" and t.map and any(c.type == "image" for c in t.children or [])
        for i in range(*t.map)
    }
    for i, line in enumerate(md.split("\n")):
        if re.fullmatch(r"!\[[^\]\n]*\]\([^)\s]+\)", line) and i not in fenced:
            assert i in image_lines, f"line {i + 1} should be an image: {line[:80]!r}"
    for t in tokens:
        if t.type != "html_block" or t.content.lstrip().startswith("<!--"):
            continue
        checker = _Balance()
        checker.feed(t.content)
        checker.close()
        assert not checker.errors and not checker.stack, f"unbalanced HTML block: {t.content[:120]!r}"
