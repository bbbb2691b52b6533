"""Helpers of the scale-out tests: options for a small run, and comparing output trees."""

from __future__ import annotations

import json
from pathlib import Path

from deepocr_cli.options import ConvertOptions

#: Keys that legitimately differ between runs: seconds per stage.
TIMING_KEYS = {"timing"}


def options(model: Path, out: Path, **kw) -> ConvertOptions:
    return ConvertOptions(model=str(model), output_dir=out, max_new_tokens=24, **kw)


def _strip(obj: object) -> object:
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [_strip(x) for x in obj]
    return obj


def differences(reference: Path, other: Path) -> list[str]:
    """Files that differ between two output trees: bytes, or JSON with timing fields removed."""
    ref = {p.relative_to(reference) for p in reference.rglob("*") if p.is_file()}
    got = {p.relative_to(other) for p in other.rglob("*") if p.is_file()}
    diffs = [f"only in reference: {p}" for p in sorted(ref - got)] + [f"extra: {p}" for p in sorted(got - ref)]
    for rel in sorted(ref & got):
        a, b = reference / rel, other / rel
        if rel.suffix == ".json":
            if _strip(json.loads(a.read_text())) != _strip(json.loads(b.read_text())):
                diffs.append(f"differs: {rel}")
        elif a.read_bytes() != b.read_bytes():
            diffs.append(f"differs: {rel}")
    return diffs


def page_indices(out: Path) -> dict[str, list[int]]:
    """Page indices per written JSON (a page twice would show here)."""
    return {p.name: [pg["index"] for pg in json.loads(p.read_text())["pages"]] for p in out.glob("*.json")}
