"""Per-document run state: exclusive locks, up-to-date checks and resumable partial results.

Locks are advisory `flock`s on the source file itself, so overlapping runs (two cron jobs) never
convert the same document at once and no lock files are left behind; a killed process releases
its locks automatically. Finished pages of a document in progress are appended to a hidden
`.<stem>.deepocr-partial.jsonl` beside the outputs, so an interrupted run resumes where it stopped; the file
stays while a document is partial, so a rerun retries only its failed pages.

A finished document also gets a hidden `.<stem>.deepocr-state.json`: its state key, status, the failed and
truncated pages, and the size and digest of every output file written (one per format of
`outputs.formats.FORMATS`, plus figure crops). `decide` compares it with what a run asks for: up to date
only when every requested output is there and unchanged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from deepocr_cli.outputs.atomic import atomic_write_bytes
from deepocr_cli.outputs.formats import FORMATS
from deepocr_cli.outputs.paths import OutputPaths
from deepocr_cli.outputs.results import DocResult, PageResult

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


def is_busy(source: Path) -> bool:
    """Whether another process holds the document's lock now (probed, not kept)."""
    lock = DocumentLock(source)
    try:
        if not lock.acquire():
            return True
    except OSError:
        return False  # unreadable: the run reports it
    lock.release()
    return False


def state_key(sha256: str, model: dict, settings: dict) -> str:
    """Identity of a conversion: same source bytes, model and output settings give the same key."""
    blob = json.dumps({"sha256": sha256, "model": model, "settings": settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def state_path(paths: OutputPaths) -> Path:
    """Hidden record of a finished document's outputs."""
    return paths.json.with_name(f".{paths.stem}.deepocr-state.json")


def _file_record(path: Path) -> dict:
    st = path.stat()
    return {"file": path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256_file(path)}


def _is_current(path: Path, rec: dict | None) -> bool:
    """The file is there and is the one recorded (size and mtime first; the digest when they moved)."""
    if not rec:
        return False
    try:
        st = path.stat()
    except OSError:
        return False
    if st.st_size != rec.get("size"):
        return False
    if st.st_mtime_ns == rec.get("mtime_ns"):
        return True
    try:
        return sha256_file(path) == rec.get("sha256")
    except OSError:
        return False


def crop_links(doc: DocResult) -> list[str]:
    """Figure crops the document's Markdown links to, relative to the output folder."""
    return sorted({link for p in doc.pages for b in p.blocks for link in b.image_paths})


def write_state(paths: OutputPaths, key: str, doc: DocResult, formats: Collection[str],
                previous: dict | None = None) -> None:
    """Record the finished document: key, status, page outcomes and every output file now current.

    Args:
        paths: the document's outputs.
        key: its state key.
        doc: the document as written.
        formats: the formats whose files were (re)written from ``doc``.
        previous: the record of an earlier run with the same key; its files stay recorded when a rewrite
            (Markdown restored from JSON) left them as they were.
    """
    files = dict((previous or {}).get("files") or {})
    for name in formats:
        files[name] = _file_record(FORMATS[name].path(paths))
    record = {
        "state_key": key,
        "status": doc.status,
        "pages": len(doc.pages),
        "failed": [p.index for p in doc.pages if p.error is not None],
        "truncated": [p.index for p in doc.pages if p.truncated],
        "max_new_tokens": doc.settings.get("max_new_tokens"),
        "longest": max((p.generated_tokens for p in doc.pages if p.error is None and not p.truncated), default=0),
        "files": files,
        "images": crop_links(doc),
    }
    atomic_write_bytes(state_path(paths), (json.dumps(record, indent=1) + "\n").encode())


def read_state(paths: OutputPaths, key: str) -> dict | None:
    """The record of an earlier run with this key; None when missing, unreadable or for another key.

    A JSON output written for the same key (by a version without the record, or whose record was deleted)
    stands in for it: it then is the only file known to be current.
    """
    try:
        data = json.loads(state_path(paths).read_text(encoding="utf-8"))
        if isinstance(data, dict) and data.get("state_key") == key:
            return data
    except (OSError, ValueError):
        pass
    try:
        doc = json.loads(paths.json.read_text(encoding="utf-8"))
        if (doc.get("settings") or {}).get("state_key") != key:
            return None
        pages = doc.get("pages") or []
        # Without a record, an output no older than the JSON is taken as written with it (`write_document` writes
        # the JSON first).
        json_mtime = paths.json.stat().st_mtime_ns
        files = {"json": _file_record(paths.json)}
        for name, fmt in FORMATS.items():
            other = fmt.path(paths)
            if name != "json" and other.is_file() and other.stat().st_mtime_ns >= json_mtime:
                files[name] = _file_record(other)
        return {
            "state_key": key, "status": doc.get("status"), "pages": len(pages),
            "failed": [p["index"] for p in pages if p.get("error")],
            "truncated": [p["index"] for p in pages if p.get("truncated")],
            "max_new_tokens": (doc.get("settings") or {}).get("max_new_tokens"),
            "longest": max((int(p.get("generated_tokens") or 0) for p in pages
                            if not p.get("error") and not p.get("truncated")), default=0),
            "files": files,
            "images": sorted({link for p in pages for b in p.get("blocks") or [] for link in b.get("image_paths") or []}),
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


@dataclass
class Verdict:
    """What a run must do for one document.

    Attributes:
        action: ``convert`` (run the model, resuming kept pages), ``rewrite`` (restore missing outputs from the
            current JSON, no model) or ``current`` (nothing to do).
        reason: why, for the report.
        formats: with ``rewrite``: the formats to write again.
        crops: with ``rewrite``: the figure crops to save again.
        truncated: truncated pages kept from the earlier run.
        record: the earlier run's record.
    """

    action: str
    reason: str = ""
    formats: list[str] = field(default_factory=list)
    crops: list[str] = field(default_factory=list)
    truncated: int = 0
    record: dict | None = None


def decide(paths: OutputPaths, key: str, formats: Collection[str], retry_truncated: bool = False,
           max_new_tokens: int | None = None) -> Verdict:
    """Whether a document is up to date: every requested output there and current, no page left to retry.

    Failed pages are always retried. Truncated pages are retried with ``retry_truncated`` or when
    ``max_new_tokens`` differs from the limit they were cut at (the same limit would cut them again); pages that
    ended within a new limit are kept, and only a limit below the longest of them reconverts those pages.
    """
    rec = read_state(paths, key)
    if rec is None:
        return Verdict("convert", "not converted with these settings, model and source")
    if rec.get("failed"):
        return Verdict("convert", f"{len(rec['failed'])} failed page(s) to retry", record=rec)
    truncated = len(rec.get("truncated") or [])
    limit_changed = max_new_tokens is not None and rec.get("max_new_tokens") != max_new_tokens
    if truncated and (retry_truncated or limit_changed):
        why = "--retry-truncated" if retry_truncated else f"--max-new-tokens {max_new_tokens}"
        return Verdict("convert", f"{truncated} truncated page(s) to retry ({why})", record=rec)
    if max_new_tokens is not None and int(rec.get("longest") or 0) > max_new_tokens:
        return Verdict("convert", f"pages longer than --max-new-tokens {max_new_tokens} to redo", record=rec)
    files = rec.get("files") or {}
    stale = [n for n in formats if not _is_current(FORMATS[n].path(paths), files.get(n))]
    folder = paths.json.parent
    crops = [c for c in rec.get("images") or [] if not (folder / c).is_file()]
    if not stale and not crops:
        return Verdict("current", "up to date", truncated=truncated, record=rec)
    if _is_current(paths.json, files.get("json")):
        what = ", ".join([FORMATS[n].path(paths).name for n in stale] + ([f"{len(crops)} figure crop(s)"] if crops else []))
        return Verdict("rewrite", f"restored {what} from {paths.json.name}", stale, crops, truncated, rec)
    return Verdict("convert", "outputs missing or changed: " + ", ".join(stale or ["figure crops"]), record=rec)


def page_still_valid(page: PageResult, retry_truncated: bool, max_new_tokens: int | None) -> bool:
    """Whether a page an earlier run finished (same key) stands under the current settings.

    A failed page never does. A truncated page stopped at exactly its limit (``generated_tokens``): it stands while
    the limit is the same and ``retry_truncated`` is off. A page that ended on its own stands under any limit it
    stayed within (greedy decoding repeats it token for token).
    """
    if page.error is not None:
        return False
    if page.truncated:
        return not retry_truncated and (max_new_tokens is None or page.generated_tokens == max_new_tokens)
    return max_new_tokens is None or page.generated_tokens <= max_new_tokens


def kept_pages(partial: PartialPages, json_path: Path, retry_truncated: bool = False,
               max_new_tokens: int | None = None) -> dict[int, PageResult]:
    """The pages a conversion can keep: those of the partial-page record, or, when there is none, of a JSON
    output written for the same key; only pages still valid under the current settings (`page_still_valid`)."""
    pages = partial.load()
    if not pages:
        try:
            data = json.loads(json_path.read_text(encoding="utf-8"))
            if (data.get("settings") or {}).get("state_key") == partial.key:
                pages = {int(p["index"]): PageResult.from_json(p) for p in data.get("pages") or []}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pages = {}
    return {i: p for i, p in pages.items() if page_still_valid(p, retry_truncated, max_new_tokens)}


def stale_outputs(paths: OutputPaths, key: str, formats: Collection[str]) -> list[str] | None:
    """The requested formats `decide` would restore from the JSON, in registry order; None when the document
    must be converted (no current JSON for this key, or pages to retry)."""
    verdict = decide(paths, key, formats)
    if verdict.action == "convert":
        return None
    return [n for n in FORMATS if n in verdict.formats]


def partial_path(json_path: Path) -> Path:
    """Hidden file holding the finished pages of a document in progress."""
    return json_path.with_name(f".{json_path.stem}.deepocr-partial.jsonl")


class PartialPages:
    """Append-only record of finished pages; a torn last line (killed mid-write) is ignored."""

    def __init__(self, path: Path, key: str) -> None:
        self.path = path
        self.key = key

    def load(self) -> dict[int, PageResult]:
        """Pages recorded by an earlier run with the same key, the last record of each page winning (empty if none
        or another key); `kept_pages` decides which of them still stand."""
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
            try:
                page = PageResult.from_json(rec)
            except (KeyError, TypeError, ValueError):
                continue
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

    def append(self, page: PageResult, sync: bool = True) -> None:
        """Record one finished page, durably unless ``sync`` is off (a page that is cheap to redo, such as a
        blank one: the next synced page or the document's end makes it durable; a crash before costs its redo)."""
        with self.path.open("a", encoding="utf-8", errors="surrogateescape") as f:
            f.write(json.dumps(page.to_json(), ensure_ascii=False) + "\n")
            f.flush()
            if sync:
                os.fsync(f.fileno())

    def remove(self) -> None:
        """Delete the record once the document's outputs are written."""
        self.path.unlink(missing_ok=True)
