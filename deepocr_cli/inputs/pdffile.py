"""Opening a PDF with MuPDF whatever its name or header, and collecting what MuPDF says about damage it repairs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pymupdf

from deepocr_cli.inputs.discover import SNIFF_BYTES

# MuPDF prints its errors and warnings on stderr; deepocr collects them per document and page instead.
for _quiet in ("mupdf_display_errors", "mupdf_display_warnings"):
    if hasattr(pymupdf.TOOLS, _quiet):
        getattr(pymupdf.TOOLS, _quiet)(False)


def mupdf_messages() -> list[str]:
    """MuPDF's warnings since the last call (repairs, broken objects), de-duplicated, in order."""
    try:
        text = pymupdf.TOOLS.mupdf_warnings(reset=True)
    except Exception:  # noqa: BLE001 - diagnostics must never fail a page
        return []
    out: list[str] = []
    for line in text.splitlines():
        line = line.strip().rstrip(";")
        if line and line not in out:
            out.append(line)
    return out


def page_damage(doc: Any, page: Any) -> str:
    """Why a page would render blank because the file lost part of it ("" if it is whole): its page object or a
    content stream is gone (a truncated file, a damaged page tree); MuPDF substitutes an empty page for it."""
    n = doc.xref_length()
    if not 0 < page.xref < n:
        return "page object missing"
    try:
        contents = page.get_contents()
    except Exception as e:  # noqa: BLE001 - an unreadable /Contents is damage too
        return f"page contents unreadable ({e})"
    if any(not 0 < c < n or not doc.xref_is_stream(c) for c in contents):
        return "page content stream missing"
    return ""


def _is_utf8(path: Path) -> bool:
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _pdf_header_offset(path: Path) -> int:
    """Where ``%PDF-`` starts within the first KiB (junk before it is common after mail gateways and scanners)."""
    with path.open("rb") as f:
        head = f.read(SNIFF_BYTES)
    at = head.find(b"%PDF")
    return max(at, 0)


def open_pdf_file(path: Path) -> Any:
    """``pymupdf.open`` for a PDF by content, whatever its name: a name that is not valid UTF-8 (Latin-1 bytes from
    an old file server) cannot be passed to MuPDF as a string, and a file with junk before its header is handed
    over from ``%PDF-`` on; both are read into memory and opened from the bytes.

    Raises:
        OSError: the file cannot be read. MuPDF's own exceptions: it is not a PDF MuPDF can open.
    """
    offset = _pdf_header_offset(path)
    if offset or not _is_utf8(path):
        with path.open("rb") as f:
            f.seek(offset)
            data = f.read()
        return pymupdf.open(stream=data, filetype="pdf")
    return pymupdf.open(path, filetype="pdf")
