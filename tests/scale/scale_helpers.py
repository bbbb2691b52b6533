"""Helpers of the scale-out tests: options for a small run, and comparing output trees."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deepocr_cli.options import ConvertOptions
from deepocr_cli.run.convert import convert
from deepocr_cli.run.report import RunReport

#: Keys that legitimately differ between runs: seconds per stage, and the write time of each output that the
#: hidden state record keeps (.NAME.deepocr-state.json; the files' sizes and digests are still compared).
TIMING_KEYS = {"timing", "mtime_ns"}


def convert_on(engine: Any, paths: list[Path], opts: ConvertOptions) -> RunReport:
    """Convert ``paths`` on an engine the test opened (and watches), then stop its workers."""
    try:
        return convert(paths, opts, engine_factory=lambda: engine)
    finally:
        engine.close()


def options(model: Path, out: Path, **kw) -> ConvertOptions:
    return ConvertOptions(model=str(model), output_dir=out, max_new_tokens=24, **kw)


def _strip(obj: object) -> object:
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [_strip(x) for x in obj]
    return obj


def _load(path: Path) -> object:
    data = json.loads(path.read_text())
    if path.name.endswith(".deepocr-state.json"):
        # The record's digest of NAME.json covers its timing fields; NAME.json itself is compared without them.
        rec = data.get("files", {}).get("json", {})
        rec.pop("size", None), rec.pop("sha256", None)
    return data


def differences(reference: Path, other: Path) -> list[str]:
    """Files that differ between two output trees: bytes, or JSON with timing fields removed."""
    ref = {p.relative_to(reference) for p in reference.rglob("*") if p.is_file()}
    got = {p.relative_to(other) for p in other.rglob("*") if p.is_file()}
    diffs = [f"only in reference: {p}" for p in sorted(ref - got)] + [f"extra: {p}" for p in sorted(got - ref)]
    for rel in sorted(ref & got):
        a, b = reference / rel, other / rel
        if rel.suffix == ".json":
            if _strip(_load(a)) != _strip(_load(b)):
                diffs.append(f"differs: {rel}")
        elif a.read_bytes() != b.read_bytes():
            diffs.append(f"differs: {rel}")
    return diffs


def page_indices(out: Path) -> dict[str, list[int]]:
    """Page indices per written JSON (a page twice would show here)."""
    return {p.name: [pg["index"] for pg in json.loads(p.read_text())["pages"]] for p in out.glob("*.json") if not p.name.startswith(".")}
