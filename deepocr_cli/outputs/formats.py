"""The output formats `--format` chooses from: one registry, one writer.

Each format turns a finished document into bytes; `write_document` writes the requested ones atomically next to
each other (``paper.md``, ``paper.json``, ...). To add a format, write ``render(doc, paths) -> bytes`` in a module
of its own and `register` it here.
"""

from __future__ import annotations

import copy
import importlib
import json
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from deepocr_cli.outputs.atomic import atomic_write_bytes
from deepocr_cli.outputs.json import render_json
from deepocr_cli.outputs.markdown import render_markdown
from deepocr_cli.outputs.paths import OutputPaths, escape_surrogates, percent_escape_surrogates
from deepocr_cli.outputs.results import DocResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Format:
    """One output format.

    Attributes:
        name: what `--format` calls it (``md``).
        suffix: appended to the document's output stem (``.md``).
        render: the document's bytes in this format; it may read the source (a PDF layer does).
        description: one line for ``--help``.
    """

    name: str
    suffix: str
    render: Callable[[DocResult, OutputPaths], bytes]
    description: str = ""

    def path(self, paths: OutputPaths) -> Path:
        """Where this format's file of a document goes."""
        return paths.with_suffix(self.suffix)


#: Every format by name, in the order they are written and listed.
FORMATS: dict[str, Format] = {}
#: What `--format` writes when not given.
DEFAULT_FORMATS = ("md", "json")


def register(fmt: Format) -> Format:
    """Add a format to the registry (a name registered twice is a bug)."""
    if fmt.name in FORMATS:
        raise ValueError(f"output format {fmt.name!r} is registered twice")
    FORMATS[fmt.name] = fmt
    return fmt


def _markdown_bytes(doc: DocResult, paths: OutputPaths) -> bytes:
    # image links of a source with a non-UTF-8 name: its undecodable bytes percent-encoded, the file stays UTF-8
    return percent_escape_surrogates(render_markdown(doc)).encode("utf-8")


def _json_bytes(doc: DocResult, paths: OutputPaths) -> bytes:
    return (escape_surrogates(json.dumps(render_json(doc), ensure_ascii=False, indent=2)) + "\n").encode("utf-8")


def _lazy(module: str, name: str) -> Callable[[DocResult, OutputPaths], bytes]:
    """A renderer imported on first use, so `--help` and the md/json path never load what pdf or html need."""

    def render(doc: DocResult, paths: OutputPaths) -> bytes:
        return getattr(importlib.import_module(module), name)(doc, paths)

    render.__name__ = name
    return render


register(Format("md", ".md", _markdown_bytes, "Markdown: the page contents in reading order"))
register(Format("json", ".json", _json_bytes, "JSON: blocks with boxes, tables, figures, per-page metadata"))
register(Format("pdf", ".ocr.pdf", _lazy("deepocr_cli.outputs.pdf", "render_pdf"),
                "searchable PDF: the original pages with an invisible text layer"))  # fmt: skip
register(Format("alto", ".alto.xml", _lazy("deepocr_cli.outputs.alto", "render_alto"),
                "ALTO 4.4 XML: page layout and text for library systems (METS/ALTO)"))  # fmt: skip
register(Format("txt", ".txt", _lazy("deepocr_cli.outputs.txt", "render_txt"),
                "plain text in reading order, pages separated by form feeds"))  # fmt: skip
register(Format("html", ".html", _lazy("deepocr_cli.outputs.html", "render_html"),
                "review page: page images with numbered block boxes beside the text"))  # fmt: skip


def _names_percent_escaped(doc: DocResult) -> DocResult:
    """``doc`` itself, or, for a source with a non-UTF-8 name, a copy whose ``source_rel`` carries the undecodable
    bytes as ``%XX``, so that the UTF-8 formats (ALTO's file name, the review page's title) can be written; JSON
    escapes them itself and Markdown links encode the bytes (`markdown.link_target`)."""
    if percent_escape_surrogates(doc.source_rel) == doc.source_rel:
        return doc
    out = copy.copy(doc)
    out.source_rel = percent_escape_surrogates(doc.source_rel)
    return out


def write_document(doc: DocResult, paths: OutputPaths, formats: Collection[str] = DEFAULT_FORMATS) -> list[Path]:
    """Write the document in the requested formats, each atomically (crops are saved by `save_page_crops`).

    Args:
        doc: the document.
        paths: where to write.
        formats: names from `FORMATS`.

    Returns:
        The files written, in the order of `FORMATS`.

    Raises:
        ValueError: an unknown format.
        OutputError: a file cannot be written.
    """
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown output format(s): {', '.join(sorted(unknown))}")
    # JSON first: it holds the state key, and every other output of the same write is then no older than it,
    # which is how an up-to-date check tells a current output from one an earlier run left (run.state).
    order = sorted((f for f in FORMATS.values() if f.name in formats), key=lambda f: f.name != "json")
    text_doc = _names_percent_escaped(doc)
    for fmt in order:
        atomic_write_bytes(fmt.path(paths), fmt.render(doc if fmt.name == "json" else text_doc, paths))
    written = [f.path(paths) for f in FORMATS.values() if f.name in formats]
    log.debug("wrote %s", ", ".join(str(p) for p in written))
    return written
