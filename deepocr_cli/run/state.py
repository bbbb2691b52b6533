"""Per-document run state: exclusive locks, up-to-date checks and resumable partial results.

Locks are advisory `flock`s on the source file itself, so overlapping runs (two cron jobs) never
convert the same document at once and no lock files are left behind; a killed process releases
its locks automatically. Finished pages of a document in progress are appended to a hidden
`.<stem>.deepocr-partial.jsonl` beside the outputs, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Collection, Iterable
from pathlib import Path

from deepocr_cli.outputs.formats import FORMATS
from deepocr_cli.outputs.paths import OutputPaths
from deepocr_cli.outputs.results import PageResult

log = logging.getLogger(__name__)

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: no cross-process locking
    fcntl = None  # type: ignore[assignment]


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, streamed."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class DocumentLock:
    """A non-blocking exclusive lock on one source document, held until release()."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock; False if another process holds it."""
        fd = os.open(self.source, os.O_RDONLY)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
        self._fd = fd
        return True

    def release(self) -> None:
        """Release the lock (idempotent)."""
        if self._fd is not None:
            if fcntl is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def state_key(sha256: str, model: dict, settings: dict) -> str:
    """Identity of a conversion: same source bytes, model and output settings give the same key."""
    blob = json.dumps({"sha256": sha256, "model": model, "settings": settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def is_up_to_date(json_path: Path, key: str) -> bool:
    """Whether an existing JSON output was produced for this exact key and finished cleanly."""
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    settings = data.get("settings") if isinstance(data, dict) else None
    if not (isinstance(settings, dict) and settings.get("state_key") == key):
        return False
    # A document with failed pages (a fault, a page that did not render) is retried, never "up to date".
    pages = data.get("pages")
    return not (isinstance(pages, list) and any(isinstance(p, dict) and p.get("error") for p in pages))


def stale_outputs(paths: OutputPaths, key: str, formats: Collection[str]) -> list[str] | None:
    """Which requested outputs of a document need writing again, when its JSON is current.

    The JSON records the state key; `write_document` writes it first, so every other output of the same write
    is no older than it. An output that is missing, or older than the JSON (left by an earlier run with other
    settings), is stale.

    Returns:
        None when the JSON is missing or carries another key (the document must be converted again); else the
        names of the requested formats to rewrite, in registry order (empty: everything is up to date).
    """
    if not is_up_to_date(paths.json, key):
        return None
    try:
        json_mtime = paths.json.stat().st_mtime_ns
    except OSError:
        return None
    stale = []
    for name in formats:
        if name == "json":
            continue
        try:
            fresh = FORMATS[name].path(paths).stat().st_mtime_ns >= json_mtime
        except OSError:
            fresh = False
        if not fresh:
            stale.append(name)
    return [n for n in FORMATS if n in stale]


def partial_path(json_path: Path) -> Path:
    """Hidden file holding the finished pages of a document in progress."""
    return json_path.with_name(f".{json_path.stem}.deepocr-partial.jsonl")


class PartialPages:
    """Append-only record of finished pages; a torn last line (killed mid-write) is ignored."""

    def __init__(self, path: Path, key: str) -> None:
        self.path = path
        self.key = key

    def load(self) -> dict[int, PageResult]:
        """Pages finished by an earlier run with the same key (empty if none or another key)."""
        try:
            # surrogateescape: crop paths of a source with a non-UTF-8 name keep its bytes
            lines = self.path.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
        except OSError:
            return {}
        pages: dict[int, PageResult] = {}
        for i, line in enumerate(lines):
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if i == 0:
                if rec.get("state_key") != self.key:
                    return {}
                continue
            page = PageResult.from_json(rec)
            pages[page.index] = page
        return pages

    def start(self, keep: Iterable[PageResult]) -> None:
        """(Re)write the file with its header and the pages kept from an earlier run."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        with tmp.open("w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(json.dumps({"state_key": self.key}) + "\n")
            for page in keep:
                f.write(json.dumps(page.to_json(), ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def append(self, page: PageResult) -> None:
        """Record one finished page durably."""
        with self.path.open("a", encoding="utf-8", errors="surrogateescape") as f:
            f.write(json.dumps(page.to_json(), ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def remove(self) -> None:
        """Delete the record once the document's outputs are written."""
        self.path.unlink(missing_ok=True)
