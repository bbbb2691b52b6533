"""Re-render without the model: one raw page (`deepocr parse`) or a whole converted document from the
``raw_text`` its JSON already holds (`deepocr convert --reparse`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from deepocr_cli.outputs.page import PARSER_VERSION, read_page
from deepocr_cli.outputs.parse import EOS
from deepocr_cli.outputs.results import DocResult, PageResult

log = logging.getLogger(__name__)

#: Beginnings of the page warnings written by the run, not by the parser.
_RUN_WARNINGS = ("truncated", "figure ", "figure crops", "crop image")
#: Page size `deepocr parse` assumes when none is given (pixels).
DEFAULT_WIDTH, DEFAULT_HEIGHT = 1000, 1400


def reparse_page(page: PageResult, task: str) -> None:
    """Rebuild a page's blocks, warnings and loops from its ``raw_text`` with the current parser (in place).

    Deep-parsing answers stored on image blocks are classified again from their raw answer and stay with
    the image block of the same boxes; crop links are cleared (the caller saves crops again).
    """
    if page.error is not None and not page.raw_text:
        return
    figures = {tuple(b.boxes): b.figure for b in page.blocks if b.label == "image" and b.figure is not None}
    parsed = read_page(page.raw_text, page.width, page.height, task)
    page.blocks, page.repetition = parsed.blocks, parsed.repetition
    # Warnings of the run (truncation, figure passes, crops) stay; the old parser's are replaced.
    kept = [w for w in page.warnings if w.startswith(_RUN_WARNINGS)]
    page.warnings = kept + parsed.warnings
    for block in page.blocks:
        stored = figures.get(tuple(block.boxes))
        if block.label == "image" and stored is not None:
            block.figure = refresh_figure(stored)


def refresh_figure(stored: Any) -> Any:
    """A stored deep-parsing result classified again from its raw answer with the current rules."""
    from deepocr_cli.outputs.figures import classify_figure_answer

    data = stored.to_json() if hasattr(stored, "to_json") else {}
    if isinstance(data, dict) and isinstance(data.get("raw"), str):
        return classify_figure_answer(data["raw"], truncated=bool(data.get("truncated")))
    return stored


def page_from_raw(
    raw: str,
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
    task: str = "markdown",
    truncated: bool = False,
) -> PageResult:
    """A one-page result built from raw model output, exactly as `convert` builds it after generation."""
    text = raw[: raw.rstrip().rfind(EOS)] if raw.rstrip().endswith(EOS) else raw
    page = PageResult(
        index=0, width=width, height=height, mode="unknown", grid=(1, 1), vision_tokens=0,
        image_embeddings=0, raw_text=text, truncated=truncated,
    )
    reparse_page(page, task)
    if truncated:
        page.warnings.append("truncated: the model stopped at --max-new-tokens without finishing the page")
    return page


def single_page_doc(page: PageResult, name: str = "page") -> DocResult:
    """Wrap one page into a document, for rendering it like a converted file."""
    return DocResult(Path(name), name, 0, "", 1, {}, {}, [page])


def render_raw(
    raw: str,
    fmt: str = "md",
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
    task: str = "markdown",
    figure: bool = False,
    truncated: bool = False,
) -> str:
    """What `convert` would write for one page of raw output (`deepocr parse`).

    Args:
        raw: the model's output for one page (a trailing EOS is ignored).
        fmt: ``md`` (the page's part of NAME.md) or ``json`` (its page object in NAME.json).
        width: pixel width of the page the model saw.
        height: its pixel height.
        task: ``markdown`` or ``free``, as `convert --task`.
        figure: the text is a deep-parsing answer (``Parse the figure.``): show how it is classified.
        truncated: the output hit the token limit (a JSON ``raw_text`` has no EOS to tell).

    Raises:
        ValueError: an unknown format or task.
    """
    if fmt not in ("md", "json"):
        raise ValueError(f"--format must be md or json, got {fmt!r}")
    if figure:
        from deepocr_cli.outputs.figures import classify_figure_answer

        result = classify_figure_answer(raw, truncated=truncated)
        if fmt == "json":
            data = {**result.to_json(), "alt_text": result.alt_text, "figure_markdown": result.markdown()}
            return json.dumps(data, ensure_ascii=False, indent=2) + "\n"
        from deepocr_cli.outputs.markdown import image_link

        return "\n\n".join(p for p in (image_link(result.alt_text, "figure.jpg"), result.markdown().strip()) if p) + "\n"
    page = page_from_raw(raw, width, height, task, truncated)
    doc = single_page_doc(page)
    if fmt == "json":
        from deepocr_cli.outputs.json import render_json

        return json.dumps(render_json(doc)["pages"][0], ensure_ascii=False, indent=2) + "\n"
    from deepocr_cli.outputs.markdown import render_markdown

    return render_markdown(doc)


__all__ = [
    "DEFAULT_HEIGHT",
    "DEFAULT_WIDTH",
    "PARSER_VERSION",
    "page_from_raw",
    "refresh_figure",
    "render_raw",
    "reparse_page",
    "single_page_doc",
]
