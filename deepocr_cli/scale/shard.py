"""``--shard I/N``: a fixed share of the documents, for setups that split work across machines by cron alone.

A document's shard is a stable hash (SHA-256) of its path relative to its input root, so every machine that
sees the same tree assigns it to the same shard, whatever the machine, the Python version or the file order.
"""

from __future__ import annotations

import hashlib
from pathlib import PurePath

from deepocr_cli.errors import UsageError


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N), 0 <= I < N.

    Raises:
        UsageError: not of the form I/N with 0 <= I < N.
    """
    i, sep, n = text.partition("/")
    if not sep or not i.strip().isdigit() or not n.strip().isdigit() or not 0 <= int(i) < int(n):
        raise UsageError(f"--shard takes I/N with 0 <= I < N (e.g. 0/4 .. 3/4), got {text!r}")
    return int(i), int(n)


def shard_of(rel: PurePath | str, count: int) -> int:
    """The shard (0..count-1) of a document, from its path relative to its input root."""
    key = PurePath(rel).as_posix().encode("utf-8")
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % count
