"""Golden-file helpers shared by the parser and writer tests (tests/data/raw -> tests/data/expected)."""

from __future__ import annotations

import os
from pathlib import Path

DATA = Path(__file__).parent / "data"
RAW = DATA / "raw"
EXPECTED = DATA / "expected"
# A4 rendered at 144 dpi, as the official PDF runner does.
W, H = 1191, 1684


def raw(name: str) -> str:
    """A recorded model output from tests/data/raw."""
    return (RAW / name).read_text(encoding="utf-8")


def check_golden(name: str, actual: str) -> None:
    """Compare with tests/data/expected/<name>; DEEPOCR_REGEN=1 rewrites the file instead."""
    path = EXPECTED / name
    if os.environ.get("DEEPOCR_REGEN") == "1":
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"missing golden file {path}; run with DEEPOCR_REGEN=1 and review it"
    assert actual == path.read_text(encoding="utf-8")
