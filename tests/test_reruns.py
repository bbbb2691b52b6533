"""Reruns do exactly the missing work (issue 12, points 1-4, and the nightly-cron scenario), end to end through
the CLI on tiny checkpoints. A `Probe` counts model loads and the page requests that reach the model, so each test
states exactly how much work a run did."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
from test_cli import make_pdf, make_png
from typer.testing import CliRunner

from deepocr_cli.cli import app

runner = CliRunner()


class Probe:
    """Counts model loads and requests through the real engine; can make the Nth preprocessing fail."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail_prepare_call: int | None = None) -> None:
        import deepocr_cli.run.convert as convert_mod
        from deepocr_cli.engine.ocr import Engine
        from deepocr_cli.engine.scheduler import Scheduler
        from deepocr_cli.model.engine import OcrEngine

        self.loads = 0
        self.requests = 0
        self.finished_per_step: list[int] = []
        self._prepares = 0
        self._lock = threading.Lock()
        self.fail_prepare_call = fail_prepare_call
        real_load, real_request, real_prepare = convert_mod._load_engine, Engine.engine_request, OcrEngine.prepare
        real_step = Scheduler.step

        def load(options):
            self.loads += 1
            return real_load(options)

        def engine_request(engine, request, *a, **k):  # every request the run hands to the scheduler
            self.requests += 1
            return real_request(engine, request, *a, **k)

        def step(sched):  # per scheduler step: how many sequences finished in it
            done = real_step(sched)
            self.finished_per_step.append(len(done))
            return done

        def prepare(engine, *a, **k):
            with self._lock:
                self._prepares += 1
                n = self._prepares
            if n == self.fail_prepare_call:
                raise RuntimeError("simulated broken page")
            return real_prepare(engine, *a, **k)

        monkeypatch.setattr(convert_mod, "_load_engine", load)
        monkeypatch.setattr(Engine, "engine_request", engine_request)
        monkeypatch.setattr(Scheduler, "step", step)
        monkeypatch.setattr(OcrEngine, "prepare", prepare)

    def reset(self) -> None:
        self.loads = self.requests = self._prepares = 0
        self.finished_per_step = []


def convert(model: Path | str, *args: str):
    r = runner.invoke(app, ["convert", "--model", str(model), "--mode", "tiny", "--max-new-tokens", "24",
                            "--no-deep", "--json", *args])
    report = json.loads(r.stdout) if r.stdout.strip() else None
    return r, report


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    make_pdf(root / "paper.pdf", pages=2)
    make_png(root / "sub" / "photo.png")
    return root


def statuses(report: dict) -> dict[str, str]:
    return {Path(f["source"]).name: f["status"] for f in report["files"]}


# ----------------------------------------------------------------------------- 1. every requested output


def test_format_md_alone_is_up_to_date_on_the_next_run(scripted_checkpoint: Path, tree: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    probe = Probe(monkeypatch)
    r, rep = convert(scripted_checkpoint, str(tree), "--format", "md")
    assert r.exit_code == 0 and probe.loads == 1 and probe.requests == 3
    assert (tree / "paper.md").is_file() and not (tree / "paper.json").exists()
    probe.reset()
    r, rep = convert(scripted_checkpoint, str(tree), "--format", "md")
    assert r.exit_code == 0 and statuses(rep) == {"paper.pdf": "skipped", "photo.png": "skipped"}
    assert probe.loads == 0 and probe.requests == 0
    # Asking for a format that was never written is not "up to date" (and Markdown alone cannot give JSON).
    r, rep = convert(scripted_checkpoint, str(tree), "--format", "md,json")
    assert r.exit_code == 0 and statuses(rep)["paper.pdf"] == "converted" and (tree / "paper.json").is_file()


def test_deleted_or_edited_outputs_come_back_from_the_json_without_the_model(
        scripted_checkpoint: Path, tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    probe = Probe(monkeypatch)
    r, _ = convert(scripted_checkpoint, str(tree))
    assert r.exit_code == 0
    md = (tree / "paper.md").read_bytes()
    crops = sorted(p.name for p in (tree / "paper_images").iterdir())
    assert crops, "the scripted page has a figure: its crop is an output too"
    probe.reset()
    (tree / "paper.md").unlink()
    shutil.rmtree(tree / "paper_images")
    (tree / "sub" / "photo.md").write_text("edited by hand\n")
    r, rep = convert(scripted_checkpoint, str(tree))
    assert r.exit_code == 0, r.stderr
    assert statuses(rep) == {"paper.pdf": "restored", "photo.png": "restored"}
    assert probe.loads == 0 and probe.requests == 0
    assert (tree / "paper.md").read_bytes() == md  # the same Markdown the conversion wrote
    assert sorted(p.name for p in (tree / "paper_images").iterdir()) == crops
    assert "edited by hand" not in (tree / "sub" / "photo.md").read_text()
    # And now everything is current.
    r, rep = convert(scripted_checkpoint, str(tree))
    assert set(statuses(rep).values()) == {"skipped"} and probe.loads == 0


def test_reparsed_outputs_stay_up_to_date(scripted_checkpoint: Path, tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--reparse` rewrites the outputs of the same conversion: the next run does not take them for edits."""
    probe = Probe(monkeypatch)
    assert convert(scripted_checkpoint, str(tree))[0].exit_code == 0
    assert runner.invoke(app, ["convert", "--reparse", str(tree)]).exit_code == 0
    probe.reset()
    r, rep = convert(scripted_checkpoint, str(tree))
    assert r.exit_code == 0 and set(statuses(rep).values()) == {"skipped"} and probe.loads == 0


# ----------------------------------------------------------------------------- 2. a partial document stays partial


def test_failed_page_is_retried_alone_and_the_rest_is_kept(scripted_checkpoint: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    pdf = make_pdf(tmp_path / "book.pdf", pages=3)
    probe = Probe(monkeypatch, fail_prepare_call=2)
    r, rep = convert(scripted_checkpoint, str(pdf))
    assert r.exit_code == 3 and rep["files"][0]["status"] == "partial" and rep["files"][0]["failed_pages"] == 1
    assert probe.requests == 2
    first = json.loads((tmp_path / "book.json").read_text())
    kept = {p["index"]: p["raw_text"] for p in first["pages"] if not p["error"]}
    # The partial document is not "up to date": the rerun retries exactly the failed page.
    probe.reset()
    probe.fail_prepare_call = None
    r, rep = convert(scripted_checkpoint, str(pdf), "-v")
    assert r.exit_code == 0, r.stderr
    assert probe.loads == 1 and probe.requests == 1
    f = rep["files"][0]
    assert f["status"] == "converted" and f["pages"] == 1 and f["resumed_pages"] == 2
    assert rep["totals"]["pages"] == 1 and rep["totals"]["resumed_pages"] == 2
    assert "resuming book.pdf: 2 of 3 pages already done" in r.stderr
    data = json.loads((tmp_path / "book.json").read_text())
    assert [p["error"] for p in data["pages"]] == [None, None, None]
    assert all(data["pages"][i]["raw_text"] == t for i, t in kept.items())
    assert not (tmp_path / ".book.deepocr-partial.jsonl").exists()


def test_failed_page_keeps_exit_3_until_it_converts(scripted_checkpoint: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    pdf = make_pdf(tmp_path / "book.pdf", pages=2)
    probe = Probe(monkeypatch, fail_prepare_call=1)
    r, _ = convert(scripted_checkpoint, str(pdf))
    assert r.exit_code == 3
    probe.reset()
    probe.fail_prepare_call = 1  # still broken
    r, rep = convert(scripted_checkpoint, str(pdf))
    assert r.exit_code == 3 and rep["files"][0]["status"] == "partial" and probe.requests == 0


def test_truncated_pages_are_kept_and_said_so_until_settings_change(random_checkpoint: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    pdf = make_pdf(tmp_path / "long.pdf", pages=2)
    probe = Probe(monkeypatch)
    args = ["--max-new-tokens", "6", str(pdf)]
    r, rep = convert(random_checkpoint, *args)
    assert r.exit_code == 3 and rep["files"][0]["truncated_pages"] == 2 and probe.requests == 2
    # Same settings: the model would truncate them again. Not loaded, still exit 3, and the summary says why.
    probe.reset()
    r, rep = convert(random_checkpoint, *args)
    assert r.exit_code == 3 and probe.loads == 0
    assert rep["totals"]["truncated_kept"] == 2
    assert "2 kept from earlier runs with the same settings (--retry-truncated" in r.stderr  # the summary line
    f = rep["files"][0]
    assert f["status"] == "partial" and f["truncated_pages"] == 2
    assert "kept from an earlier run" in f["reason"] and "--retry-truncated" in f["reason"]
    # --retry-truncated runs exactly those pages again.
    r, rep = convert(random_checkpoint, *args, "--retry-truncated")
    assert r.exit_code == 3 and probe.loads == 1 and probe.requests == 2
    assert "kept from an earlier run" not in rep["files"][0]["reason"] and rep["totals"]["truncated_kept"] == 0
    # A changed limit (the setting that caused it) retries them without the flag.
    probe.reset()
    r, rep = convert(random_checkpoint, "--max-new-tokens", "7", str(pdf))
    assert probe.requests == 2 and rep["files"][0]["pages"] == 2


def test_a_new_token_limit_redoes_only_the_pages_it_affects(scripted_checkpoint: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    pdf = make_pdf(tmp_path / "book.pdf", pages=3)
    probe = Probe(monkeypatch)

    def run(limit: int) -> tuple[int, int]:
        probe.reset()
        r = runner.invoke(app, ["convert", "--model", str(scripted_checkpoint), "--mode", "tiny", "--no-deep",
                                "--max-new-tokens", str(limit), str(pdf)])
        return r.exit_code, probe.requests

    assert run(5) == (3, 3)  # every page cut at 5 tokens
    assert run(40) == (0, 3)  # the limit that cut them changed: retried, and they end on their own
    ended = [p["generated_tokens"] for p in json.loads((tmp_path / "book.json").read_text())["pages"]]
    assert max(ended) < 40
    assert run(60) == (0, 0) and probe.loads == 0  # a higher limit changes nothing for pages that ended
    assert run(5) == (3, 3)  # a limit below what they needed: those pages again


def test_a_failed_page_is_retried_under_a_new_limit_and_finished_pages_kept(
        scripted_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pdf = make_pdf(tmp_path / "book.pdf", pages=3)
    probe = Probe(monkeypatch, fail_prepare_call=3)
    r, _ = convert(scripted_checkpoint, str(pdf))
    assert r.exit_code == 3 and probe.requests == 2
    probe.reset()
    probe.fail_prepare_call = None
    r = runner.invoke(app, ["convert", "--model", str(scripted_checkpoint), "--mode", "tiny", "--no-deep",
                            "--max-new-tokens", "40", str(pdf), "--json"])
    assert r.exit_code == 0 and probe.requests == 1 and json.loads(r.stdout)["totals"]["resumed_pages"] == 2
    # --force redoes everything.
    probe.reset()
    r = runner.invoke(app, ["convert", "--model", str(scripted_checkpoint), "--mode", "tiny", "--no-deep",
                            "--max-new-tokens", "40", str(pdf), "--force"])
    assert r.exit_code == 0 and probe.requests == 3


# ----------------------------------------------------------------------------- 3. the same model is the same model


def test_any_spelling_of_the_checkpoint_is_the_same_model(scripted_checkpoint: Path, tree: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    probe = Probe(monkeypatch)
    r, _ = convert(scripted_checkpoint, str(tree))
    assert r.exit_code == 0 and probe.loads == 1
    model = json.loads((tree / "paper.json").read_text())["model"]
    assert model["path"] == str(scripted_checkpoint.resolve()) and len(model["fingerprint"]) == 32
    link = tmp_path / "ckpt-link"
    link.symlink_to(scripted_checkpoint, target_is_directory=True)
    monkeypatch.chdir(scripted_checkpoint.parent)
    for spelling in (f"./{scripted_checkpoint.name}", f"{scripted_checkpoint.name}/", str(link),
                     f"{scripted_checkpoint}/../{scripted_checkpoint.name}"):
        probe.reset()
        r, rep = convert(spelling, str(tree))
        assert r.exit_code == 0 and set(statuses(rep).values()) == {"skipped"}, spelling
        assert probe.loads == 0, spelling


def test_hub_id_and_its_cached_snapshot_folder_are_the_same_model(scripted_checkpoint: Path, tree: Path,
                                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf" / "hub" / "models--acme--tiny-ocr"
    snapshot = repo / "snapshots" / commit
    shutil.copytree(scripted_checkpoint, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    probe = Probe(monkeypatch)
    r, _ = convert("acme/tiny-ocr", str(tree))
    assert r.exit_code == 0, r.stderr
    model = json.loads((tree / "paper.json").read_text())["model"]
    assert model["repo"] == "acme/tiny-ocr" and model["commit"] == commit and model["id"] == "acme/tiny-ocr"
    probe.reset()
    r, rep = convert(snapshot, str(tree))
    assert set(statuses(rep).values()) == {"skipped"} and probe.loads == 0
    # A copy elsewhere is the same files: the same model too.
    r, rep = convert(shutil.copytree(scripted_checkpoint, tmp_path / "copy"), str(tree))
    assert set(statuses(rep).values()) == {"skipped"} and probe.loads == 0


def test_retrained_weights_of_the_same_shape_are_another_model(scripted_checkpoint: Path, tmp_path: Path) -> None:
    """Training that touched one layer in the middle of the file (every element of its matrix moves) is seen."""
    import struct

    from deepocr_cli.checkpoints import checkpoint_identity

    copy = shutil.copytree(scripted_checkpoint, tmp_path / "retrained")
    weights = max(copy.glob("*.safetensors"), key=lambda f: f.stat().st_size)
    data = bytearray(weights.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    spans = sorted(v["data_offsets"] for k, v in header.items() if k != "__metadata__")
    begin, end = spans[len(spans) // 2]  # a tensor in the middle of the file
    for i in range(8 + n + begin, 8 + n + end):
        data[i] ^= 0x01
    weights.write_bytes(bytes(data))
    a, b = checkpoint_identity(scripted_checkpoint), checkpoint_identity(copy)
    assert a.key != b.key and a.key == checkpoint_identity(str(scripted_checkpoint) + "/").key
    (copy / "config.json").write_text((scripted_checkpoint / "config.json").read_text() + " ")
    assert checkpoint_identity(copy).key not in (a.key, b.key)


# ----------------------------------------------------------------------------- 4. resuming is visible and cheap


def test_pages_are_checkpointed_as_each_one_finishes(random_checkpoint: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Continuous batching hands each page back the step it finishes, and the runner records it then: a kill
    loses only the pages still decoding, whatever --batch-size is."""
    import deepocr_cli.run.runner as runner_mod

    pdf = make_pdf(tmp_path / "book.pdf", pages=5)
    partial = tmp_path / ".book.deepocr-partial.jsonl"
    probe = Probe(monkeypatch)
    recorded_while_running: list[int] = []
    real_finish = runner_mod.finish_page

    def finish(ctx, work):
        real_finish(ctx, work)
        recorded_while_running.append(len(partial.read_text().splitlines()) - 1)  # pages on disk (minus header)

    monkeypatch.setattr(runner_mod, "finish_page", finish)
    r, _ = convert(random_checkpoint, "--max-new-tokens", "4", "--batch-size", "3", str(pdf))
    assert r.exit_code == 3  # random weights: truncated pages
    assert recorded_while_running == [1, 2, 3, 4, 5]  # each page on disk as soon as it is done
    assert sum(probe.finished_per_step) == 5 and sum(1 for n in probe.finished_per_step if n) >= 2


# ----------------------------------------------------------------------------- the nightly cron scenario


def test_scenario_nightly_reruns_do_exactly_the_missing_work(scripted_checkpoint: Path, tree: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    probe = Probe(monkeypatch)
    # Night 1: the whole tree (2 + 1 pages).
    r, rep = convert(scripted_checkpoint, str(tree))
    assert (r.exit_code, probe.loads, probe.requests) == (0, 1, 3)
    original_md = (tree / "paper.md").read_bytes()
    # Someone deletes a Markdown; the checkpoint is now named through another path; only Markdown is asked for.
    (tree / "paper.md").unlink()
    link = tmp_path / "models" / "ocr"
    link.parent.mkdir()
    link.symlink_to(scripted_checkpoint, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    probe.reset()
    r, rep = convert("./models/ocr/", str(tree), "--format", "md")
    assert (r.exit_code, probe.loads, probe.requests) == (0, 0, 0)
    assert statuses(rep) == {"paper.pdf": "restored", "photo.png": "skipped"}
    assert (tree / "paper.md").read_bytes() == original_md
    # The archive grows by a 3-page document, one page of which breaks.
    make_pdf(tree / "sub" / "new.pdf", pages=3)
    probe.reset()
    probe.fail_prepare_call = 2
    r, rep = convert("models/ocr", str(tree), "--format", "md")
    assert (r.exit_code, probe.loads, probe.requests) == (3, 1, 2)
    assert statuses(rep) == {"paper.pdf": "skipped", "photo.png": "skipped", "new.pdf": "partial"}
    # Next night: only the broken page runs.
    probe.reset()
    probe.fail_prepare_call = None
    r, rep = convert(str(link), str(tree), "--format", "md", "-v")
    assert (r.exit_code, probe.loads, probe.requests) == (0, 1, 1)
    assert statuses(rep)["new.pdf"] == "converted" and "resuming new.pdf: 2 of 3 pages already done" in r.stderr
    # And the night after, nothing at all.
    probe.reset()
    r, rep = convert(scripted_checkpoint, str(tree), "--format", "md")
    assert (r.exit_code, probe.loads, probe.requests) == (0, 0, 0)
    assert set(statuses(rep).values()) == {"skipped"}
