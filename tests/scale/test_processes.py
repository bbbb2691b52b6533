"""`--devices cpu,cpu`: two engine processes behind one run, through the real model code on a tiny checkpoint.

Each test starts worker processes (a torch import and a model load each), hence slow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from scale_helpers import convert_on, differences, options, page_indices
from typer.testing import CliRunner

from deepocr_cli.cli import app
from deepocr_cli.scale.engine import open_engine

pytestmark = pytest.mark.slow


def test_two_cpu_workers_write_what_one_process_writes(scripted_checkpoint: Path, workload: Path,
                                                        reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["convert", str(workload), "--model", str(scripted_checkpoint), "-o", str(out),
                                 "--max-new-tokens", "24", "--devices", "cpu,cpu", "--json", "-q"])
    assert r.exit_code == 0, r.stderr
    assert differences(reference, out) == []
    report = json.loads(r.stdout)
    workers = report["workers"]
    assert [w["worker"] for w in workers] == ["cpu#0", "cpu#1"]
    assert all(w["requests"] > 0 and w["pages_per_s"] > 0 and w["tokens_per_s"] > 0 for w in workers)
    # Every page, escalation and figure crop went through exactly one worker.
    assert sum(w["generated_tokens"] for w in workers) >= report["totals"]["generated_tokens"]
    # Up to date: a rerun skips every document without starting a worker.
    again = CliRunner().invoke(app, ["convert", str(workload), "--model", str(scripted_checkpoint), "-o", str(out),
                                     "--max-new-tokens", "24", "--devices", "cpu,cpu", "--json", "-q"])
    assert again.exit_code == 0, again.stderr
    second = json.loads(again.stdout)
    assert {f["status"] for f in second["files"]} == {"skipped"} and "workers" not in second


def test_a_killed_worker_has_its_pages_redone_elsewhere(scripted_checkpoint: Path, workload: Path,
                                                        reference: Path, tmp_path: Path) -> None:
    opts = options(scripted_checkpoint, tmp_path / "out", devices=("cpu", "cpu"))
    engine = open_engine(opts)
    killed: list[int] = []

    def kill_once(worker: int, tasks: list) -> None:  # right after a batch is sent: it is in flight
        if not killed:
            killed.append(len(tasks))
            engine.backend.kill(worker)

    engine.dispatcher.on_dispatch = kill_once
    report = convert_on(engine, [workload], opts)
    assert killed and killed[0] >= 1
    assert report.exit_code == 0
    assert sum(w["deaths"] for w in report.workers) == 1
    assert differences(reference, tmp_path / "out") == []
    assert page_indices(tmp_path / "out") == page_indices(reference)


def test_a_hung_worker_is_killed_after_the_timeout_and_its_pages_redone(scripted_checkpoint: Path, workload: Path,
                                                                         reference: Path, tmp_path: Path) -> None:
    import os
    import signal

    opts = options(scripted_checkpoint, tmp_path / "out", devices=("cpu", "cpu"), worker_timeout=4.0)
    engine = open_engine(opts)
    frozen: list[int] = []

    def freeze_once(worker: int, tasks: list) -> None:  # a worker stops answering with a batch in flight
        if not frozen:
            frozen.append(worker)
            os.kill(engine.backend.pid(worker), signal.SIGSTOP)

    engine.dispatcher.on_dispatch = freeze_once
    report = convert_on(engine, [workload], opts)
    assert frozen
    assert report.exit_code == 0
    assert sum(w["deaths"] for w in report.workers) == 1  # killed once, restarted, its pages redone
    assert differences(reference, tmp_path / "out") == []
    assert page_indices(tmp_path / "out") == page_indices(reference)


def test_a_page_that_keeps_killing_workers_is_failed_not_retried_forever(scripted_checkpoint: Path,
                                                                        tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name, size in (("poison.png", (333, 222)), ("fine.png", (400, 300))):
        img = Image.new("RGB", size, "white")
        ImageDraw.Draw(img).text((20, 20), name, fill="black")
        img.save(src / name)
    # Pages reach the workers as drawn (no blank-page skip, no turning), so the poison page is known by its size.
    opts = options(scripted_checkpoint, tmp_path / "out", devices=("cpu", "cpu"), worker_retries=1, deep=False,
                   skip_blank=False, rotate=False, deskew=False)
    engine = open_engine(opts)
    # Whichever worker is given the poison page dies, every time.
    engine.dispatcher.on_dispatch = lambda w, tasks: (
        engine.backend.kill(w) if any(t.pixels.size == (333, 222) for t in tasks) else None)
    report = convert_on(engine, [src], opts)
    status = {Path(f.source).name: f for f in report.files}
    assert status["fine.png"].status == "converted"
    assert status["poison.png"].status == "failed" and "lost 2 worker(s)" in status["poison.png"].reason
    assert report.exit_code == 3
    assert sum(w["deaths"] for w in report.workers) == 2  # the first try and one retry, then no more
    page = json.loads((tmp_path / "out" / "poison.json").read_text())["pages"][0]
    assert page["error"]["stage"] == "worker"


def test_worker_errors_keep_their_exit_codes(scripted_checkpoint: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    img = tmp_path / "page.png"
    page = Image.new("RGB", (400, 200), "white")
    ImageDraw.Draw(page).text((20, 20), "A line of print, so the page is not blank", fill="black")
    page.save(img)
    args = ["convert", str(img), "--max-new-tokens", "24", "--devices", "cpu,cpu", "-q"]
    # A checkpoint the workers cannot load: model unavailable (6), as in one process.
    r = CliRunner().invoke(app, [*args, "--model", str(tmp_path / "missing")])
    assert r.exit_code == 6, r.stderr
    # Not even one page fits the memory budget: out of resources (7), raised in a worker, reported here.
    monkeypatch.setenv("DEEPOCR_MEMORY_BUDGET", "1")
    r = CliRunner().invoke(app, [*args, "--model", str(scripted_checkpoint)])
    assert r.exit_code == 7 and "memory" in r.stderr.lower()


def test_ocr2_through_two_cpu_workers_writes_what_one_process_writes(tmp_path: Path) -> None:
    """The workers load OCR-2; the driver prices its pages with OCR-2's grids and sends each page's n-gram window."""
    from deepocr_cli.model import write_random_checkpoint
    from deepocr_cli.model.ocr2_config import NATIVE
    from deepocr_cli.sample_docs import make_sample_docs
    from tests.conftest import SCRIPT

    ckpt = write_random_checkpoint(tmp_path / "ocr2", family="ocr2", layout=NATIVE, seed=1, script=SCRIPT)
    samples = tmp_path / "samples"
    make_sample_docs(samples)
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("slide.pdf", "scanned_page.jpg"):
        (docs / name).write_bytes((samples / name).read_bytes())
    common = ["convert", str(docs), "--model", str(ckpt), "--max-new-tokens", "24", "--no-deep", "--json", "-q"]
    one = CliRunner().invoke(app, [*common, "-o", str(tmp_path / "one")])
    two = CliRunner().invoke(app, [*common, "-o", str(tmp_path / "two"), "--devices", "cpu,cpu"])
    assert one.exit_code == 0 and two.exit_code == 0, (one.stderr, two.stderr)
    assert differences(tmp_path / "one", tmp_path / "two") == []
    page = json.loads((tmp_path / "two" / "scanned_page.json").read_text())["pages"][0]
    # OCR-2's count: 256 for the global view, 144 per tile, plus one separator embedding
    assert (page["vision_tokens"] - 256) % 144 == 0 and page["image_embeddings"] == page["vision_tokens"] + 1
