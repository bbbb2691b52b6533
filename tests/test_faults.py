"""Fault injection: one named stage of one document raises, through the real CLI and model code, and only that
document (or page) fails. Every stage of `deepocr_cli.boundary.STAGES` x RuntimeError, OSError, MemoryError.

Each case checks what the reliability promise says (README, "Reliability"): the other documents are converted
with outputs identical to a clean run, the faulty one is reported with its reason in the log and in `--json`,
no temporary or half-written file remains, the exit code is 3, and a rerun without the fault converts only the
document that failed, to the same outputs as a clean run.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymupdf
import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from deepocr_cli import boundary
from deepocr_cli.cli import app
from deepocr_cli.run import convert as run_convert

BAD = "bad.pdf"
EXCEPTIONS = {
    "RuntimeError": RuntimeError("code=7: injected fault"),
    "OSError": OSError(5, "Input/output error (injected)"),
    "MemoryError": MemoryError("injected: page too large"),
}
#: Stages at which the whole document fails (nothing written for it); at the others its pages fail.
DOC_STAGES = {"discover", "hash", "open", "page_count", "write"}


def _pdf(path: Path, pages: int, text: str) -> None:
    doc = pymupdf.open()
    for i in range(pages):
        doc.new_page(width=595, height=842).insert_textbox(
            pymupdf.Rect(50, 50, 545, 800), f"{text} page {i + 1}. " + "Some words here. " * 30, fontsize=11)
    doc.save(path)
    doc.close()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three documents, made once (so every run converts the same bytes): a good PDF, the one that will fail
    (two pages), a PNG."""
    root = tmp_path_factory.mktemp("template")
    _pdf(root / "good.pdf", 1, "Good")
    _pdf(root / BAD, 2, "Bad")
    img = Image.new("RGB", (500, 400), "white")
    ImageDraw.Draw(img).text((20, 20), "An image page", fill="black")
    img.save(root / "photo.png")
    return root


@pytest.fixture()
def docs(template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(template, tmp_path / "docs"))


@pytest.fixture(scope="module")
def engine(scripted_checkpoint: Path) -> Any:
    """One real engine for the module: every run below goes through it (loading is not what is tested here)."""
    from deepocr_cli.engine import load_engine

    return load_engine(str(scripted_checkpoint), device="cpu")


@pytest.fixture()
def cli(engine: Any, scripted_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setattr(run_convert, "_load_engine", lambda options: engine)
    calls: list[int] = []  # one entry per request handed to the model's scheduler
    real = engine.engine_request

    def counting(prepared: Any, max_new_tokens: int) -> Any:
        calls.append(1)
        return real(prepared, max_new_tokens)

    monkeypatch.setattr(engine, "engine_request", counting)

    def invoke(root: Path, *extra: str) -> Any:
        args = ["convert", str(root), "--model", str(scripted_checkpoint), "--max-new-tokens", "32",
                "--max-mode", "tiny", "--json", *extra]
        result = CliRunner().invoke(app, args)
        result.calls = list(calls)
        calls.clear()
        return result

    yield invoke
    boundary.fault_hook = None


def outputs(root: Path) -> dict[str, Any]:
    """Every output file under ``root`` (Markdown as text, JSON without timings, crops by size); deepocr's hidden
    bookkeeping (state records with file times, checkpoints) is checked separately."""
    out: dict[str, Any] = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.suffix in (".pdf", ".png") and p.parent == root or p.name.startswith("."):
            continue
        rel = p.relative_to(root).as_posix()
        if p.suffix == ".json":
            out[rel] = _drop_timing(json.loads(p.read_text(encoding="utf-8")))
        elif p.suffix == ".md":
            out[rel] = p.read_text(encoding="utf-8")
        else:
            out[rel] = p.stat().st_size
    return out


def _drop_timing(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _drop_timing(v) for k, v in obj.items() if k not in ("timing", "wall_s")}
    if isinstance(obj, list):
        return [_drop_timing(v) for v in obj]
    return obj


@pytest.fixture(scope="module")
def clean(engine: Any, scripted_checkpoint: Path, template: Path,
          tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The outputs of a run without faults."""
    root = Path(shutil.copytree(template, tmp_path_factory.mktemp("clean") / "docs"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(run_convert, "_load_engine", lambda options: engine)
        result = CliRunner().invoke(app, ["convert", str(root), "--model", str(scripted_checkpoint),
                                          "--max-new-tokens", "32", "--max-mode", "tiny"])
    assert result.exit_code == 0, result.output
    out = outputs(root)
    assert {"bad.md", "bad.json", "good.md", "good.json", "photo.md", "photo.json"} <= set(out)
    assert any(k.startswith("bad_images/") for k in out)  # the figure crop pass ran: stage "crops" is real
    return out


def _fault(stage: str, exc: BaseException) -> Any:
    def hook(at: str, source: Path) -> None:
        if at == stage and source.name == BAD:
            raise exc

    return hook


@pytest.mark.slow
@pytest.mark.parametrize("exc_name", list(EXCEPTIONS))
@pytest.mark.parametrize("stage", boundary.STAGES)
def test_a_fault_in_one_stage_fails_only_its_document(
    stage: str, exc_name: str, cli: Any, clean: dict[str, Any], docs: Path
) -> None:
    root = docs
    boundary.fault_hook = _fault(stage, EXCEPTIONS[exc_name])
    result = cli(root)
    boundary.fault_hook = None

    assert result.exit_code == 3, result.output
    report = json.loads(result.stdout)
    by_name = {Path(f["source"]).name: f for f in report["files"]}
    assert by_name["good.pdf"]["status"] == by_name["photo.png"]["status"] == "converted"
    bad = by_name[BAD]
    assert bad["status"] == "failed" and bad["reason"], bad
    # the reason names what happened, on one line, in the report and in the log
    expected = {"RuntimeError": "injected fault", "OSError": "Input/output error", "MemoryError": "out of memory"}
    assert expected[exc_name] in bad["reason"] and "\n" not in bad["reason"]
    assert BAD in result.stderr and expected[exc_name] in result.stderr
    assert "Traceback" not in result.output

    got = outputs(root)
    others = {k: v for k, v in clean.items() if not k.startswith("bad")}
    assert {k: v for k, v in got.items() if not k.startswith(("bad", ".bad"))} == others
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")], "temporary file left behind"
    if stage in DOC_STAGES:
        assert not (root / "bad.json").exists() and not (root / "bad.md").exists()
    else:  # written, complete, and saying which pages failed at which stage
        data = json.loads((root / "bad.json").read_text(encoding="utf-8"))
        assert data["status"] == "failed" and all(p["error"] for p in data["pages"])
        assert {p["error"]["stage"] for p in data["pages"]} <= {stage, "render", "generate", "figures"}

    rerun = cli(root)
    assert rerun.exit_code == 0, rerun.output
    statuses = {Path(f["source"]).name: f["status"] for f in json.loads(rerun.stdout)["files"]}
    assert statuses == {"good.pdf": "skipped", "photo.png": "skipped", BAD: "converted"}
    assert outputs(root) == clean
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp") or "deepocr-partial" in p.name]


def test_the_stage_list_is_what_the_run_enters(cli: Any, docs: Path) -> None:
    """Every stage of the matrix is entered for a document in a clean run (a stage the run never enters would
    make its fault cases vacuous)."""
    root = docs
    seen: set[str] = set()
    boundary.fault_hook = lambda stage, source: seen.add(stage) if source.name == BAD else None
    result = cli(root)
    boundary.fault_hook = None
    assert result.exit_code == 0, result.output
    assert seen == set(boundary.STAGES)


def test_run_level_errors_still_end_the_run(cli: Any, docs: Path) -> None:
    from deepocr_cli.errors import OutOfResourcesError

    root = docs
    boundary.fault_hook = _fault("generate", OutOfResourcesError("out of memory at batch size 1"))
    result = cli(root)
    boundary.fault_hook = None
    assert result.exit_code == 7, result.output
    assert "out of memory at batch size 1" in result.stderr


def test_an_output_that_cannot_be_written_fails_only_its_document(cli: Any, clean: dict[str, Any], docs: Path) -> None:
    """A real OutputError from the atomic writer (the Markdown's name is taken by a folder) used to escape
    `maybe_finish_doc` and end the run; now it is that document's failure, with nothing half-written."""
    (docs / "bad.md").mkdir()
    result = cli(docs)
    assert result.exit_code == 3, result.output
    files = {Path(f["source"]).name: f for f in json.loads(result.stdout)["files"]}
    assert files["good.pdf"]["status"] == files["photo.png"]["status"] == "converted"
    assert files[BAD]["status"] == "failed" and "cannot write" in files[BAD]["reason"]
    assert not [p for p in docs.rglob("*") if p.name.endswith(".tmp")]
    assert {k: v for k, v in outputs(docs).items() if k.startswith(("good", "photo"))} == {
        k: v for k, v in clean.items() if k.startswith(("good", "photo"))}
    (docs / "bad.md").rmdir()
    rerun = cli(docs)
    assert rerun.exit_code == 0 and rerun.calls == []  # the pages were checkpointed: no model call needed
    assert outputs(docs) == clean


def test_a_failing_model_step_is_rerun_sequence_by_sequence(
    cli: Any, engine: Any, clean: dict[str, Any], docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model step fails whenever a page of the bad document is in flight (as a CUDA fault or a tokenizer error
    would): the sequences in flight are rerun one by one, so only the bad document's pages fail."""
    real = engine.scheduler

    def scheduler(*args: Any, **kwargs: Any) -> Any:
        sched = real(*args, **kwargs)
        step = sched.step

        def faulty() -> Any:
            if any(s.request.tag.tag.work.doc.src.path.name == BAD for s in [*sched.running, *sched.waiting]):
                raise RuntimeError("CUDA error: an illegal memory access was encountered (injected)")
            return step()

        sched.step = faulty
        return sched

    monkeypatch.setattr(engine, "scheduler", scheduler)
    result = cli(docs)
    assert result.exit_code == 3, result.output
    files = {Path(f["source"]).name: f for f in json.loads(result.stdout)["files"]}
    assert files["good.pdf"]["status"] == files["photo.png"]["status"] == "converted"
    assert files[BAD]["status"] == "failed" and "illegal memory access" in files[BAD]["reason"]
    assert {k: v for k, v in outputs(docs).items() if not k.startswith("bad")} == {
        k: v for k, v in clean.items() if not k.startswith("bad")}
