"""Where a document's outputs go: next to its source, or mirrored under --output-dir; names that fit.

Names are bytes on POSIX: a source named with Latin-1 bytes (``caf\xe9.pdf``) gets outputs with the same bytes
(``caf\xe9.md``). A stem too long for the file system's 255-byte name limit once deepocr's longest suffix is added
is shortened at a character boundary and given ``~`` and 8 hex digits of the SHA-256 of the full stem, so it stays
stable across runs and distinct from other long names (`fit_stem`).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Longest file name (bytes) the common file systems allow (ext4, XFS, btrfs, APFS, NTFS in UTF-16 units).
NAME_MAX = 255
#: Bytes kept free after a stem for the longest name deepocr derives from it: the resume checkpoint's temp file
#: ``.STEM.deepocr-partial.jsonl.PID.tmp`` (+36), an atomic write's ``.STEM.ocr.pdf.PID.RANDOM.tmp`` (+30),
#: ``STEM_images`` (+7).
RESERVED_BYTES = 48
_HASH_LEN = 8
_SURROGATE = re.compile("[\udc80-\udcff]")


def fit_stem(stem: str, reserve: int = RESERVED_BYTES, limit: int = NAME_MAX) -> str:
    """``stem`` itself when ``stem`` plus ``reserve`` bytes fits in ``limit``; else a shortened, hashed stem.

    The kept prefix ends on a whole UTF-8 character; the hash is of the full stem's bytes, so two long names that
    share their first ~200 bytes still get distinct outputs, and the same name always gets the same outputs.
    """
    raw = os.fsencode(stem)
    if len(raw) + reserve <= limit:
        return stem
    cut = raw[: limit - reserve - _HASH_LEN - 1]
    while cut and cut[-1] & 0xC0 == 0x80:  # drop the continuation bytes of a character cut in two...
        cut = cut[:-1]
    if cut and cut[-1] >= 0xC0:  # ...and its lead byte
        cut = cut[:-1]
    return os.fsdecode(cut) + "~" + hashlib.sha256(raw).hexdigest()[:_HASH_LEN]


def path_hash(path: Path) -> str:
    """8 hex digits naming a source by its absolute path: the tie-break between two sources of one name."""
    return hashlib.sha256(os.fsencode(os.path.abspath(path))).hexdigest()[:_HASH_LEN]


def source_path_for(src: Any, paths: OutputPaths) -> str:
    """``source.path`` of the JSON: the source (as the user named it, ``root/rel``) relative to the JSON's folder,
    ``/``-separated, so ``json_file.parent / source.path`` is the source and two sources never share it."""
    return Path(os.path.relpath(src.root / src.rel, paths.json.parent)).as_posix()


def percent_escape_surrogates(text: str) -> str:
    """Markdown text with the undecodable bytes of non-UTF-8 names (in image links) written ``%XX``.

    The file stays valid UTF-8, and a link's percent-decoded bytes are the crop folder's real name
    (``caf%E9_images/p001_00.jpg`` for ``caf\\xe9_images``).
    """
    return _SURROGATE.sub(lambda m: f"%{ord(m.group()) - 0xDC00:02X}", text)


def escape_surrogates(text: str) -> str:
    """JSON text with the undecodable bytes of non-UTF-8 names written as ``\\udcXX`` escapes.

    Python reads an undecodable byte 0xXX of a file name as the lone surrogate U+DCXX ("surrogateescape"); UTF-8
    cannot encode it, JSON can escape it. ``os.fsencode(json.loads(text)[...])`` gives the original bytes back.
    Apply to the output of ``json.dumps(..., ensure_ascii=False)`` (surrogates only occur inside its strings).
    """
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


@dataclass(frozen=True)
class OutputPaths:
    """Where one document's outputs go: ``paper.md``, ``paper.json`` and ``paper_images/``."""

    markdown: Path
    json: Path
    images_dir: Path

    @property
    def stem(self) -> str:
        """The name every output of the document starts with (``paper`` for ``paper.json``)."""
        return self.json.name[: -len(".json")]

    def with_suffix(self, suffix: str) -> Path:
        """The output with this suffix beside the others (``.ocr.pdf`` -> ``paper.ocr.pdf``)."""
        return self.json.with_name(self.stem + suffix)


def output_paths(source: Path, root: Path, output_dir: Path | None, stem: str | None = None) -> OutputPaths:
    """Choose output locations for a source document.

    Args:
        source: the input file.
        root: the input root the user named (a folder, or the file itself).
        output_dir: when given, outputs mirror ``source``'s path relative to ``root`` under it;
            otherwise they go next to the source.
        stem: output name stem; default the source's stem (the pipeline passes the full name,
            e.g. ``a.pdf``, when two sources would otherwise share outputs). Shortened by `fit_stem`.

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
    stem = fit_stem(stem or source.stem)
    return OutputPaths(base / f"{stem}.md", base / f"{stem}.json", base / f"{stem}_images")
