"""The Markdown output: page contents in reading order, figures linked to their crops."""

from __future__ import annotations

import re

from deepocr_cli.outputs.results import DocResult, PageResult

_BLANK_RUN_RE = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")


def _comment(text: str) -> str:
    """An HTML comment that cannot be closed early by its text."""
    return "<!-- " + " ".join(text.replace("--", "- -").split()) + " -->"


def _alt(text: str | None) -> str:
    return " ".join((text or "").replace("[", "(").replace("]", ")").split())


def _page_markdown(page: PageResult) -> list[str]:
    number = page.index + 1
    parts = [f"<!-- page {number} -->"]
    if page.error is not None:
        parts.append(_comment(f"deepocr: page {number} failed at {page.error.stage}: {page.error.message}"))
    if page.truncated:
        parts.append(
            _comment(
                f"deepocr: page {number} is truncated: generation stopped without end-of-sentence after "
                f"{page.generated_tokens} tokens; the text below may be incomplete or repetitive"
            )
        )
    for block in page.blocks:
        if block.label == "image":
            figure = block.figure
            alt = _alt(getattr(figure, "alt_text", None)) if figure is not None else ""
            parts.extend(
                f"![{alt}]({link})" for link in block.image_paths or filter(None, [block.image_path])
            )
            figure_md = figure.markdown().strip() if figure is not None else ""  # type: ignore[attr-defined]
            if figure_md:
                parts.append(figure_md)
            if block.content:
                parts.append(block.content)
        elif block.content:
            parts.append(block.content)
    return parts


def render_markdown(doc: DocResult) -> str:
    """Render a document as Markdown.

    Blocks come in reading order with grounding tags removed; tables stay HTML and math stays LaTeX.
    Each page starts with a ``<!-- page N -->`` line and pages are separated by a horizontal rule;
    truncated and failed pages carry an explanatory comment.
    """
    chunks = ["\n\n".join(_page_markdown(page)) for page in doc.pages]
    text = "\n\n---\n\n".join(chunks)
    return _BLANK_RUN_RE.sub("\n\n", text).strip() + "\n"
