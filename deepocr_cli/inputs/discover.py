"""Turn the paths a user gives into a deduplicated, ordered list of documents, recognised by content."""

from __future__ import annotations

import fnmatch
import logging
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from deepocr_cli.boundary import enter
from deepocr_cli.boundary import reason as reason_for

log = logging.getLogger(__name__)

#: Extensions looked at when walking a directory; anything else there is ignored silently.
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(
    {".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"}
)
#: Folder where deepocr keeps its own state (locks, partial results); never an input.
STATE_DIR_NAME = ".deepocr"
#: Suffix of the folder that holds image crops next to a source (`paper.pdf` -> `paper_images/`).
IMAGES_DIR_SUFFIX = "_images"
#: Output files whose presence next to `<stem>_images/` marks that folder as ours (--output-dir has no source).
_OUTPUT_EXTENSIONS = frozenset({".md", ".json"})
#: The searchable PDF deepocr writes beside a source (``paper.ocr.pdf`` with ``paper.json``); see outputs.formats.
OCR_PDF_SUFFIX = ".ocr.pdf"

#: Bytes read to recognise a file. PDF readers accept `%PDF` anywhere in the first 1 KiB (junk before it is common).
SNIFF_BYTES = 1024
_IMAGE_MAGIC: tuple[bytes, ...] = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",  # JPEG (any APPn marker follows)
    b"II*\x00",  # TIFF little-endian
    b"MM\x00*",  # TIFF big-endian
    b"II+\x00",  # BigTIFF little-endian
    b"MM\x00+",  # BigTIFF big-endian
)
#: BMP DIB header sizes; "BM" alone is too weak a signature (a text file may start with it).
_BMP_DIB_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})


class DocKind(StrEnum):
    """What a document is, by content."""

    PDF = "pdf"
    IMAGE = "image"


@dataclass(frozen=True)
class SourceDoc:
    """One input document.

    Attributes:
        path: absolute, resolved path of the file (symlinks followed).
        root: the input argument it was found under: the directory given, or the file's parent for a
            file argument (absolute, not resolved, so outputs land next to the path the user sees).
        rel: path relative to ``root`` as walked; mirrors the tree under ``--output-dir``.
        kind: PDF or image, by content.
    """

    path: Path
    root: Path
    rel: Path
    kind: DocKind


@dataclass(frozen=True)
class SkippedInput:
    """A path that was looked at and not taken.

    Attributes:
        path: the path as found (absolute).
        reason: one line for the user, e.g. ``"does not exist"``.
    """

    path: Path
    reason: str


def sniff_kind(path: Path) -> DocKind | None:
    """Recognise a document by its first bytes.

    Args:
        path: a regular file.

    Returns:
        ``DocKind.PDF`` when ``%PDF`` occurs in the first KiB, ``DocKind.IMAGE`` for PNG, JPEG, TIFF, WebP or
        BMP magic, ``None`` for anything else (including an empty file).

    Raises:
        OSError: the file cannot be read.
    """
    with path.open("rb") as f:
        head = f.read(SNIFF_BYTES)
    if b"%PDF" in head:
        return DocKind.PDF
    if head.startswith(_IMAGE_MAGIC):
        return DocKind.IMAGE
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return DocKind.IMAGE
    if head[:2] == b"BM" and len(head) >= 18 and int.from_bytes(head[14:18], "little") in _BMP_DIB_SIZES:
        return DocKind.IMAGE
    return None


def _matches(rel: Path, patterns: Sequence[str]) -> bool:
    rel_s = rel.as_posix()
    return any(fnmatch.fnmatch(rel_s, p) or fnmatch.fnmatch(rel.name, p) for p in patterns)


def _is_state_path(path: Path) -> bool:
    return STATE_DIR_NAME in path.parts


def _is_output_images_dir(d: Path, sibling_names: Sequence[str]) -> bool:
    """Whether ``d`` is a ``<stem>_images`` folder written by deepocr next to a source or its outputs."""
    if not d.name.endswith(IMAGES_DIR_SUFFIX) or len(d.name) == len(IMAGES_DIR_SUFFIX):
        return False
    stem = d.name[: -len(IMAGES_DIR_SUFFIX)]
    wanted = SUPPORTED_EXTENSIONS | _OUTPUT_EXTENSIONS
    for name in sibling_names:
        p = Path(name)
        if p.stem == stem and p.suffix.lower() in wanted:
            return True
    return False


def _content_reason(path: Path, explicit: bool) -> tuple[DocKind | None, str]:
    """Sniff one regular file; on failure, also return the user-facing reason."""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            return None, "not a regular file"
        if st.st_size == 0:
            return None, "empty file (0 bytes)"
        kind = sniff_kind(path)
    except FileNotFoundError:
        return None, "vanished while scanning"
    except OSError as e:
        return None, f"cannot read: {e.strerror or e}"
    if kind is None:
        what = "not a PDF or a supported image (PNG, JPEG, TIFF, WebP, BMP)"
        return None, what if explicit else f"{what}, despite its {path.suffix} extension"
    return kind, ""


class _Collector:
    """Accumulates documents and skips across all arguments, removing duplicates by resolved path."""

    def __init__(self, include: Sequence[str], exclude: Sequence[str]) -> None:
        self.include = tuple(include)
        self.exclude = tuple(exclude)
        self.docs: list[SourceDoc] = []
        self.skipped: list[SkippedInput] = []
        self._seen: set[Path] = set()
        self._skipped_seen: set[Path] = set()

    def skip(self, path: Path, reason: str) -> None:
        if path in self._skipped_seen:
            return
        self._skipped_seen.add(path)
        log.info("skipping %s: %s", path, reason)
        self.skipped.append(SkippedInput(path, reason))

    def wanted(self, rel: Path) -> bool:
        if self.include and not _matches(rel, self.include):
            return False
        return not _matches(rel, self.exclude)

    def add(self, path: Path, root: Path, rel: Path, explicit: bool) -> None:
        """Sniff ``path`` and keep it unless it was seen before."""
        resolved = path.resolve()
        if resolved in self._seen:
            log.debug("duplicate input %s (same file as an earlier one)", path)
            return
        try:
            enter("discover", path)
            kind, reason = _content_reason(path, explicit)
        except Exception as e:  # noqa: BLE001 - one file's failure never stops discovery (boundary.py)
            kind, reason = None, reason_for(e)
        if kind is None:
            self.skip(path, reason)
            return
        self._seen.add(resolved)
        self.docs.append(SourceDoc(path=resolved, root=root, rel=rel, kind=kind))


def _is_output_pdf(name: str, sibling_names: Sequence[str]) -> bool:
    """Whether ``name`` is a searchable PDF deepocr wrote: ``STEM.ocr.pdf`` beside deepocr's ``STEM.json``.

    Converting it again would OCR deepocr's own output on every rerun of a tree converted with ``--format pdf``.
    """
    if not name.lower().endswith(OCR_PDF_SUFFIX) or len(name) == len(OCR_PDF_SUFFIX):
        return False
    return f"{name[: -len(OCR_PDF_SUFFIX)]}.json" in sibling_names


def _walk(root: Path, recursive: bool, out: _Collector) -> None:
    """Depth-first walk of ``root``, sorted by name, safe against symlink loops."""
    found: list[tuple[Path, Path]] = []  # (lexical path, rel) of candidate files
    visited: set[Path] = set()
    stack: list[Path] = [root]
    while stack:
        d = stack.pop()
        real = d.resolve()
        if real in visited:  # a symlink back to an ancestor (or to a folder already walked)
            log.debug("not walking %s again (symlink loop or repeated folder)", d)
            continue
        visited.add(real)
        try:
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except FileNotFoundError:
            out.skip(d, "vanished while scanning")
            continue
        except OSError as e:
            out.skip(d, f"cannot read directory: {e.strerror or e}")
            continue
        names = [e.name for e in entries]
        subdirs: list[Path] = []
        for entry in entries:
            if entry.name.startswith("."):  # hidden files and folders, .deepocr included
                continue
            p = Path(entry.path)
            rel = p.relative_to(root)
            try:
                is_dir = entry.is_dir()  # follows symlinks; loops are caught by `visited`
            except OSError:
                is_dir = False
            if is_dir:
                if not recursive or _is_output_images_dir(p, names) or _matches(rel, out.exclude):
                    continue
                subdirs.append(p)
            elif p.suffix.lower() in SUPPORTED_EXTENSIONS:
                if _is_output_pdf(entry.name, names):
                    log.debug("not converting %s: deepocr's searchable PDF of another source", p)
                elif entry.is_symlink() and not p.exists():
                    out.skip(p, "broken symbolic link")
                elif out.wanted(rel):
                    found.append((p, rel))
        stack.extend(reversed(subdirs))
    for p, rel in sorted(found, key=lambda t: t[1].parts):
        out.add(p, root, rel, explicit=False)


def _explicit_file_reason(p: Path) -> str | None:
    """Why an explicitly named file is one of deepocr's own outputs, or None."""
    if _is_state_path(p):
        return f"inside deepocr's own {STATE_DIR_NAME} folder"
    parent = p.parent
    try:
        siblings = os.listdir(parent.parent)
    except OSError:
        return None
    if _is_output_images_dir(parent, siblings):
        return f"an image crop written by deepocr (in {parent.name}/)"
    return None


def find_documents(
    paths: Sequence[Path],
    recursive: bool = True,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> tuple[list[SourceDoc], list[SkippedInput]]:
    """Find the documents to convert among files and directories.

    Files named explicitly are taken whatever their extension or name (hidden included) if their content is a PDF
    or a supported image; otherwise they are skipped with a reason. In directories, hidden entries, deepocr's own
    outputs (``<stem>_images/``, ``.deepocr/``) and files with unsupported extensions are ignored silently, while
    files with a supported extension but other content are reported.

    Args:
        paths: files and directories, in the order the user gave them.
        recursive: walk sub-directories.
        include: fnmatch globs; when given, a document must match one (on its relative path or its name).
        exclude: fnmatch globs; a document (or a directory, which is then not walked) matching one is dropped.

    Returns:
        The documents (argument order; each directory's files sorted by relative path; the first occurrence of a
        file reached twice wins) and the inputs skipped, each with a one-line reason.
    """
    out = _Collector(include, exclude)
    for given in paths:
        p = Path(os.path.abspath(Path(given).expanduser()))  # absolute and normalised, symlinks kept
        if not p.exists():
            out.skip(p, "broken symbolic link" if p.is_symlink() else "does not exist")
        elif p.is_dir():
            if _is_state_path(p):
                out.skip(p, f"deepocr's own {STATE_DIR_NAME} folder")
            else:
                _walk(p, recursive, out)
        else:
            reason = _explicit_file_reason(p)
            if reason is not None:
                out.skip(p, reason)
            elif out.wanted(Path(p.name)):
                out.add(p, p.parent, Path(p.name), explicit=True)
    log.debug("found %d document(s), skipped %d input(s)", len(out.docs), len(out.skipped))
    return out.docs, out.skipped
