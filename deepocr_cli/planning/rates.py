"""Measured model speed per mode, remembered between runs so `deepocr plan` can estimate time.

Each `convert` run adds (once, at its end), per checkpoint (its fingerprint, `deepocr_cli.checkpoints`), per
device type (cpu, cuda, mps) and per mode, the pages it generated, the tokens it generated and the generation
seconds they took to `$XDG_CACHE_HOME/deepocr/rates.json` (default ~/.cache). `plan` turns them into tokens per
second and divides each page's estimated text tokens by the rate of its mode. Without a measurement there is no
time estimate: never a fixed seconds-per-page. Best effort: a missing or unwritable cache only means plan
shows no time.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

#: Version of the rates file layout; files of another version are ignored (and replaced on the next write).
RATES_VERSION = 2


def rates_path() -> Path:
    """Where measured rates are kept."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "deepocr" / "rates.json"


def device_type(device: str) -> str:
    """``cuda:1`` -> ``cuda``: rates describe a kind of device, not one of several of a kind."""
    return str(device).split(":", 1)[0]


def _load() -> dict:
    try:
        data = json.loads(rates_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != RATES_VERSION:
        return {}
    return data.get("models") or {}


def add_page(samples: dict[str, list[float]], mode: str, seconds: float, tokens: int) -> None:
    """Add one generated page to a run's per-mode [pages, generation seconds, generated tokens] tally."""
    tally = samples.setdefault(mode, [0, 0.0, 0])
    tally[0] += 1
    tally[1] += seconds
    tally[2] += tokens


def record(model_key: str, device: str, samples: dict[str, list[float]]) -> None:
    """Merge a run's per-mode tally into the measured rates of (checkpoint, device type); one write per run."""
    if not samples:
        return
    models = _load()
    entry = models.setdefault(model_key, {}).setdefault(device_type(device), {})
    for mode, (pages, seconds, tokens) in samples.items():
        m = entry.setdefault(mode, {"pages": 0, "seconds": 0.0, "tokens": 0})
        m["pages"] += int(pages)
        m["tokens"] += int(tokens)
        m["seconds"] = round(m["seconds"] + seconds, 4)
    path = rates_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"version": RATES_VERSION, "models": models}, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        log.debug("cannot record rates: %s", e)


def tokens_per_second(model_key: str, device: str) -> dict[str, float]:
    """{mode: generated tokens per second} measured for this checkpoint on this device type (empty if none)."""
    modes = (_load().get(model_key) or {}).get(device_type(device)) or {}
    return {mode: m["tokens"] / m["seconds"] for mode, m in modes.items() if m.get("seconds", 0) > 0 and m.get("tokens")}
