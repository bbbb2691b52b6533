"""Measured model speed per mode, remembered between runs so `deepocr plan` can estimate time.

Each `convert` run adds (once, at its end), per (model, device) and per mode, the pages it generated
and the generation seconds they took to `$XDG_CACHE_HOME/deepocr/rates.json` (default ~/.cache).
Best effort: a missing or unwritable cache only means plan shows no time.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def rates_path() -> Path:
    """Where measured rates are kept."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "deepocr" / "rates.json"


def _load() -> dict:
    try:
        data = json.loads(rates_path().read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def add_page(samples: dict[str, list[float]], mode: str, seconds: float) -> None:
    """Add one generated page to a run's per-mode [pages, generation seconds] tally."""
    tally = samples.setdefault(mode, [0, 0.0])
    tally[0] += 1
    tally[1] += seconds


def record(model: str, device: str, samples: dict[str, list[float]]) -> None:
    """Merge a run's per-mode tally into the measured rates of (model, device); one write per run."""
    if not samples:
        return
    data = _load()
    entry = data.setdefault(model, {}).setdefault(device, {})
    for mode, (pages, seconds) in samples.items():
        m = entry.setdefault(mode, {"pages": 0, "seconds": 0.0})
        m["pages"] += int(pages)
        m["seconds"] = round(m["seconds"] + seconds, 4)
    path = rates_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        log.debug("cannot record rates: %s", e)


def seconds_per_page(model: str) -> tuple[str, dict[str, float]] | None:
    """(device, {mode: seconds per page}) of the device with the most measured pages for a model."""
    devices = _load().get(model) or {}
    best = max(devices.items(), key=lambda kv: sum(m["pages"] for m in kv[1].values()), default=None)
    if best is None:
        return None
    device, modes = best
    return device, {mode: m["seconds"] / m["pages"] for mode, m in modes.items() if m["pages"]}
