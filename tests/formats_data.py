"""Shared test data for the output-format tests: source documents made with PyMuPDF, and DocResults built
from recorded model outputs (tests/data/raw) parsed at the size the source's pages were rendered at."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pymupdf
import pytest
from golden import raw
from PIL import Image

from deepocr_cli.outputs.lines import is_wide
from deepocr_cli.outputs.parse import parse_grounded
from deepocr_cli.outputs.paths import output_paths
from deepocr_cli.outputs.results import DocResult, PageError, PageResult

#: A4 in points, rendered at 144 dpi as the pipeline does.
A4 = (595.0, 842.0)
ZOOM = 2.0


def need_tool(name: str) -> str:
    """Path of an external program; skip without it, except in CI (CI=true), where its absence fails."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian: poppler-utils / chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; .ci/run installs it")
        pytest.skip(message)
    return path


def png_bytes(size: tuple[int, int], colour: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def make_scan_pdf(path: Path, rotations: tuple[int, ...] = (0, 90)) -> Path:
    """A PDF without text: per page vector drawings (rectangle, line, filled circle) and one PNG image."""
    doc = pymupdf.open()
    for i, rotation in enumerate(rotations):
        page = doc.new_page(width=A4[0], height=A4[1])
        page.draw_rect(pymupdf.Rect(40, 40, 300, 160), color=(1, 0, 0), width=2)
        page.draw_line((40, 700), (550, 700), color=(0, 0, 1), width=1.5)
        page.draw_circle((450, 120), 30, color=(0, 0.5, 0), fill=(0.8, 1, 0.8))
        page.insert_image(pymupdf.Rect(320, 420, 520, 520), stream=png_bytes((200 + i, 100), "navy"))
        page.set_rotation(rotation)
    doc.save(path)
    doc.close()
    return path


def page_result(index: int, raw_name: str | None, width: int, height: int, **fields: object) -> PageResult:
    """A converted page: a recorded model output parsed at (width, height), as the pipeline does."""
    text = raw(raw_name) if raw_name else ""
    parsed = parse_grounded(text, width, height)
    page = PageResult(
        index=index, width=width, height=height, mode="base", grid=(1, 1), vision_tokens=256, image_embeddings=273,
        raw_text=text, generated_tokens=321, blocks=parsed.blocks, warnings=parsed.warnings,
    )  # fmt: skip
    for key, value in fields.items():
        setattr(page, key, value)
    return page


def rendered_size(source: Path, index: int) -> tuple[int, int]:
    with pymupdf.open(source) as doc:
        rect = doc[index].rect
    return round(rect.width * ZOOM), round(rect.height * ZOOM)


def doc_result(source: Path, raw_names: list[str | None], failed: tuple[int, ...] = ()) -> DocResult:
    """A DocResult for ``source``: page i holds recorded output ``raw_names[i]``; pages in ``failed`` failed."""
    pages = []
    for i, name in enumerate(raw_names):
        w, h = rendered_size(source, i) if source.suffix == ".pdf" else Image.open(source).size
        if i in failed:
            pages.append(page_result(i, None, w, h, error=PageError("infer", "CUDA error: out of memory")))
        else:
            pages.append(page_result(i, name, w, h))
    return DocResult(
        source=source, source_rel=source.name, size=source.stat().st_size, sha256="0" * 64,
        page_count=len(raw_names), model={"id": "deepseek-ai/DeepSeek-OCR", "revision": "abc123"},
        settings={"mode": "base"}, pages=pages,
    )  # fmt: skip


def paths_for(source: Path):  # noqa: ANN201 - OutputPaths
    return output_paths(source, source, None)


def normalise(text: str) -> str:
    """Whitespace-insensitive form: runs collapsed, and none kept between two wide (CJK) characters, since
    a CJK line broken in two reads as one."""
    return _join_wide(" ".join(text.split()))


def _join_wide(text: str) -> str:
    out = []
    for i, ch in enumerate(text):
        if ch == " " and 0 < i < len(text) - 1 and is_wide(text[i - 1]) and is_wide(text[i + 1]):
            continue
        out.append(ch)
    return "".join(out)
