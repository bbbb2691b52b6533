"""Write a converted document as Markdown, JSON and figure crops, atomically and next to (or mirroring) its source."""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from PIL import Image

from deepocr_cli.errors import OutputError
from deepocr_cli.outputs.blockmd import blocks_markdown
from deepocr_cli.outputs.page import PARSER_VERSION
from deepocr_cli.parse import Box
from deepocr_cli.results import SCHEMA_VERSION, DocResult, PageResult

log = logging.getLogger(__name__)

#: Crop quality: upstream saves figure crops as JPEG; 90 keeps small print in charts legible.
JPEG_QUALITY = 90
FORMATS = ("md", "json")
_BLANK_RUN_RE = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")


@dataclass(frozen=True)
class OutputPaths:
    """Where one document's outputs go: ``paper.md``, ``paper.json`` and ``paper_images/``."""

    markdown: Path
    json: Path
    images_dir: Path


def output_paths(source: Path, root: Path, output_dir: Path | None, stem: str | None = None) -> OutputPaths:
    """Choose output locations for a source document.

    Args:
        source: the input file.
        root: the input root the user named (a folder, or the file itself).
        output_dir: when given, outputs mirror ``source``'s path relative to ``root`` under it;
            otherwise they go next to the source.
        stem: output name stem; default the source's stem (the pipeline passes the full name,
            e.g. ``a.pdf``, when two sources would otherwise share outputs).

    Returns:
        The three output paths.

    Raises:
        ValueError: when ``output_dir`` is given and ``source`` is not inside ``root``.
    """
    if output_dir is None:
        base = source.parent
    elif source == root:
        base = output_dir
    else:
        try:
            rel = source.relative_to(root)
        except ValueError:
            raise ValueError(f"{source} is not under the input root {root}") from None
        base = output_dir / rel.parent
    stem = stem or source.stem
    return OutputPaths(base / f"{stem}.md", base / f"{stem}.json", base / f"{stem}_images")


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Create or replace ``path`` so readers see the old file or the complete new one, never a mix.

    The data goes to a uniquely named temporary file in the same folder (same file system, so the final
    ``os.replace`` is atomic), is fsynced, then renamed over ``path``. On any error the temporary file is
    removed and ``path`` is left as it was.

    Args:
        path: the destination; missing parent folders are created.
        write: called with the open binary temporary file; it may raise to abort.

    Raises:
        OutputError: the folder or file cannot be written (permissions, disk full...).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # 0o666 minus the umask gives the same permissions a plain open() would.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}; check the output folder") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}; check free space") from exc
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself; not possible on every platform, hence best effort."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Atomically create or replace ``path`` with ``data`` (see `atomic_write`)."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    """Atomically create or replace ``path`` with UTF-8 ``text`` (see `atomic_write`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def crop_name(page_index: int, block_index: int, box_index: int | None = None) -> str:
    """File name of a figure crop: page number 1-based (as in the Markdown markers), block index as in the JSON."""
    suffix = "" if box_index is None else f"_b{box_index}"
    return f"p{page_index + 1:03d}_{block_index:02d}{suffix}.jpg"


def _crop_box(box: Box, scale_x: float, scale_y: float, margin: int, size: tuple[int, int]) -> Box:
    x1, y1, x2, y2 = box
    w, h = size
    return (
        max(0, int(x1 * scale_x) - margin),
        max(0, int(y1 * scale_y) - margin),
        min(w, int(x2 * scale_x) + margin),
        min(h, int(y2 * scale_y) + margin),
    )


def save_page_crops(page: PageResult, image: Image.Image, paths: OutputPaths, margin: int = 0) -> None:
    """Save every ``image`` block's boxes as JPEG crops and record their links on the blocks.

    Crops are named ``<stem>_images/p{page:03d}_{block:02d}.jpg`` (``_b{k}`` per box when a block has
    several); ``block.image_path``/``image_paths`` get links relative to the Markdown file. Empty boxes
    are skipped with a page warning.

    Args:
        page: the page; its ``image`` blocks are updated in place.
        image: the rendered page the model saw (``page.width`` x ``page.height``).
        paths: the document's output paths.
        margin: extra pixels around each box, clipped to the page.

    Raises:
        OutputError: a crop cannot be written.
    """
    if image.size != (page.width, page.height):
        # Boxes refer to the rendered size; scale instead of cropping the wrong region.
        page.warnings.append(
            f"crop image is {image.size}, page is {(page.width, page.height)}: boxes rescaled"
        )
    scale_x = image.width / page.width if page.width else 1.0
    scale_y = image.height / page.height if page.height else 1.0
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    for block in page.blocks:
        if block.label != "image":
            continue
        links: list[str] = []
        multi = len(block.boxes_px) > 1
        for k, box in enumerate(block.boxes_px):
            x1, y1, x2, y2 = _crop_box(box, scale_x, scale_y, 0, rgb.size)
            if x2 <= x1 or y2 <= y1:
                # Judged before the margin: a margin would turn a degenerate box into a blank crop.
                page.warnings.append(f"block {block.index}: empty image box {box}, no crop saved")
                continue
            x1, y1, x2, y2 = _crop_box(box, scale_x, scale_y, margin, rgb.size)
            name = crop_name(page.index, block.index, k if multi else None)
            crop = rgb.crop((x1, y1, x2, y2))
            atomic_write(paths.images_dir / name, lambda f, c=crop: c.save(f, "JPEG", quality=JPEG_QUALITY))
            links.append(f"{paths.images_dir.name}/{name}")
        block.image_paths = links
        block.image_path = links[0] if links else None


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

    Blocks come in reading order with grounding tags removed (rules: `deepocr_cli.outputs.blockmd`).
    Each page starts with a ``<!-- page N -->`` line and pages are separated by a horizontal rule;
    truncated and failed pages carry an explanatory comment.
    """
    chunks = ["\n\n".join(_page_markdown(page)) for page in doc.pages]
    text = "\n\n---\n\n".join(chunks)
    return _BLANK_RUN_RE.sub("\n\n", text).strip() + "\n"


def _page_json(page: PageResult) -> dict[str, Any]:
    ratio = page.compression_ratio
    out: dict[str, Any] = {}
    for key, value in page.to_json().items():
        out[key] = value
        if key == "index":
            out["page"] = page.index + 1  # 1-based, as in the Markdown markers and crop names
        elif key == "generated_tokens":
            out["compression_ratio"] = round(ratio, 4) if ratio is not None else None
    return out


def render_json(doc: DocResult) -> dict[str, Any]:
    """Build the versioned JSON document described in docs/output-schema.md."""
    pages = [_page_json(p) for p in doc.pages]
    timing: dict[str, float] = {}
    for page in doc.pages:
        for stage, seconds in page.timing.items():
            timing[stage] = round(timing.get(stage, 0.0) + seconds, 6)
    totals = {
        "pages": len(doc.pages),
        "pages_failed": sum(p.error is not None for p in doc.pages),
        "pages_truncated": sum(p.truncated for p in doc.pages),
        "pages_repeating": sum(bool(p.repetition) for p in doc.pages),
        "blocks": sum(len(p.blocks) for p in doc.pages),
        "generated_tokens": sum(p.generated_tokens for p in doc.pages),
        "vision_tokens": sum(p.vision_tokens for p in doc.pages),
        "timing": timing,
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "parser_version": PARSER_VERSION,
        "source": {
            "path": doc.source_rel,
            "size": doc.size,
            "sha256": doc.sha256,
            "page_count": doc.page_count,
        },
        "model": doc.model,
        "settings": doc.settings,
        "status": doc.status,
        "errors": list(doc.errors),
        "totals": totals,
        "pages": pages,
    }


def write_document(doc: DocResult, paths: OutputPaths, formats: Collection[str] = FORMATS) -> list[Path]:
    """Write the document's Markdown and/or JSON atomically (crops are saved by `save_page_crops`).

    Args:
        doc: the document.
        paths: where to write.
        formats: any of ``"md"`` and ``"json"``.

    Returns:
        The files written, in the order of `FORMATS`.

    Raises:
        ValueError: an unknown format.
        OutputError: a file cannot be written.
    """
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown output format(s): {', '.join(sorted(unknown))}")
    written: list[Path] = []
    if "md" in formats:
        atomic_write_text(paths.markdown, render_markdown(doc))
        written.append(paths.markdown)
    if "json" in formats:
        text = json.dumps(render_json(doc), ensure_ascii=False, indent=2) + "\n"
        atomic_write_text(paths.json, text)
        written.append(paths.json)
    log.debug("wrote %s", ", ".join(str(p) for p in written))
    return written
