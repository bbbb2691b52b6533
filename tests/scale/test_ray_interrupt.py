"""SIGTERM to a driver running with `--ray local`: finished pages stay recorded, Ray is shut down, a rerun
converts only the missing pages (this run starts its own Ray instance in a subprocess)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pymupdf
import pytest

pytest.importorskip("ray")
pytestmark = pytest.mark.slow


def _book(path: Path, pages: int) -> Path:
    doc = pymupdf.open()
    for i in range(pages):
        doc.new_page(width=595, height=842).insert_text((72, 100), f"Page {i + 1}", fontsize=14)
    doc.save(path)
    return path


def test_sigterm_keeps_finished_pages_and_a_rerun_resumes(random_checkpoint: Path, tmp_path: Path) -> None:
    pdf = _book(tmp_path / "book.pdf", pages=8)
    args = [sys.executable, "-m", "deepocr_cli", "convert", str(pdf), "--model", str(random_checkpoint),
            "--mode", "tiny", "--max-new-tokens", "40", "--batch-size", "1", "--no-deep"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([*args, "--ray", "local", "--workers", "2"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    partial = tmp_path / ".book.deepocr-partial.jsonl"
    deadline = time.time() + 240
    try:
        while time.time() < deadline:  # until two pages are recorded
            if partial.exists() and len(partial.read_text().splitlines()) >= 3:
                break
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert not (tmp_path / "book.json").exists()  # nothing half-written
    done_before = len(partial.read_text().splitlines()) - 1
    assert 2 <= done_before < 8
    # The rerun (one process: resuming is the driver's business) generates only the missing pages.
    r = subprocess.run([*args, "--json", "-q"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 3, r.stderr[-2000:]  # the random checkpoint truncates every page
    totals = json.loads(r.stdout)["totals"]
    assert totals["resumed_pages"] == done_before and totals["pages"] == 8 - done_before
    pages = json.loads((tmp_path / "book.json").read_text())["pages"]
    assert [p["index"] for p in pages] == list(range(8))
    # Straight through in one process: the same text on every page.
    straight = tmp_path / "straight"
    straight.mkdir()
    subprocess.run([*args[:4], str(_book(straight / "book.pdf", 8)), *args[5:]], env=env, capture_output=True,
                   timeout=300)
    ref = json.loads((straight / "book.json").read_text())["pages"]
    assert [p["raw_text"] for p in pages] == [p["raw_text"] for p in ref]
