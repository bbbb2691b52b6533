"""Plain text (``NAME.txt``): every converted page's text in reading order, pages separated by form feeds."""

from __future__ import annotations

from deepocr_cli.outputs.lines import page_text
from deepocr_cli.outputs.paths import OutputPaths
from deepocr_cli.outputs.results import DocResult

#: Page separator, as pdftotext writes it; ``text.split(PAGE_BREAK)`` gives one string per converted page.
PAGE_BREAK = "\f"


def render_txt(result: DocResult, paths: OutputPaths) -> bytes:
    """Build ``NAME.txt``: the plain text of each converted page (`page_text`: markup removed, tables row by
    row, equations as LaTeX, figure descriptions), each ending with a newline, joined by form feeds.

    A failed page contributes an empty page, so the n-th form-feed-separated part is always the n-th
    converted page.
    """
    del paths
    parts = []
    for page in result.pages:
        text = page_text(page)
        parts.append(text + "\n" if text else "")
    return PAGE_BREAK.join(parts).encode("utf-8")
