"""Atomic file writes: readers see the old file or the complete new one, never a mix."""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO

from deepocr_cli.errors import OutputError


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
    tmp = temp_path(path)
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


def temp_path(path: Path) -> Path:
    """A fresh hidden temporary name beside ``path`` (``.NAME.PID.RANDOM.tmp``), within the 255-byte name limit:
    for a long ``NAME`` the hidden name keeps its first bytes and adds a hash of the whole name."""
    suffix = f".{os.getpid()}.{secrets.token_hex(4)}.tmp"
    name = "." + path.name
    raw = os.fsencode(name)
    if len(raw) + len(suffix) > 255:
        digest = hashlib.sha256(raw).hexdigest()[:8]
        cut = raw[: 255 - len(suffix) - 9]
        while cut and cut[-1] & 0xC0 == 0x80:  # keep whole UTF-8 characters
            cut = cut[:-1]
        if cut and cut[-1] >= 0xC0:
            cut = cut[:-1]
        name = os.fsdecode(cut) + "~" + digest
    return path.with_name(name + suffix)


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
