"""The command line end to end, through the real model code on tiny checkpoints: one test per exit code,
resume after a kill, concurrent runs, stdin/stdout pipelines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pymupdf as fitz
import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from deepocr_cli import __version__
from deepocr_cli.cli import app
from deepocr_cli.errors import ExitCode

runner = CliRunner()


def make_pdf(path: Path, pages: int = 2, text: str = "Hello world. " * 40) -> Path:
    doc = fitz.open()
    for i in range(pages):
        page = doc.new_page(width=595, height=842)
        page.insert_textbox(fitz.Rect(50, 50, 545, 800), f"Page {i + 1}. " + text, fontsize=11)
    doc.save(path)
    doc.close()
    return path


def make_png(path: Path) -> Path:
    img = Image.new("RGB", (400, 300), "white")
    ImageDraw.Draw(img).text((20, 20), "An image page", fill="black")
    img.save(path)
    return path


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    make_pdf(root / "paper.pdf")
    make_png(root / "sub" / "photo.png")
    return root


def run(*args: str, input: str | None = None):
    return runner.invoke(app, list(args), input=input)


def convert_args(model: Path, *extra: str) -> list[str]:
    return ["convert", "--model", str(model), "--max-new-tokens", "24", "--mode", "tiny", *extra]


# ----------------------------------------------------------------------------- basics


def test_version_and_help_teach_exit_codes() -> None:
    r = run("--version")
    assert r.exit_code == 0 and __version__ in r.stdout
    r = run("convert", "--help")
    assert r.exit_code == 0
    for text in ("Exit codes", "130", "--max-compression", "Examples", "find . -name"):
        assert text in r.stdout


def test_exit_codes_documented_in_readme_match_enum() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for code in ExitCode:
        assert f"| {int(code)} " in readme, f"exit code {int(code)} missing from README"


# ----------------------------------------------------------------------------- exit 0


def test_exit_0_converts_tree_and_skips_up_to_date(scripted_checkpoint: Path, tree: Path) -> None:
    r = run(*convert_args(scripted_checkpoint, str(tree), "--json"))
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["totals"]["converted"] == 2 and report["totals"]["pages"] == 3
    md = (tree / "paper.md").read_text()
    assert "# Hello deepocr" in md and "<|ref|>" not in md
    data = json.loads((tree / "paper.json").read_text())
    assert data["schema_version"] == 1 and len(data["pages"]) == 2
    page = data["pages"][0]
    assert page["mode"] == "tiny" and page["vision_tokens"] == 64 and page["truncated"] is False
    block = page["blocks"][0]
    assert block["label"] == "image" and block["boxes"] == [[100, 50, 900, 620]]
    # The figure crop was saved, linked, and sent through the deep-parsing second pass.
    assert (tree / block["image_path"]).is_file() and block["image_path"] in md
    assert block["figure"]["kind"] == "caption"
    assert (tree / "sub" / "photo.md").exists()
    # Second run: everything up to date, no model needed to decide that.
    r2 = run(*convert_args(scripted_checkpoint, str(tree), "--json"))
    assert r2.exit_code == 0
    assert json.loads(r2.stdout)["totals"]["skipped"] == 2
    # A changed setting reconverts.
    r3 = run(*convert_args(scripted_checkpoint, str(tree), "--json", "--pages", "1"))
    assert json.loads(r3.stdout)["totals"]["converted"] == 2


def test_output_dir_mirrors_tree(scripted_checkpoint: Path, tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = run(*convert_args(scripted_checkpoint, str(tree), "-o", str(out), "--format", "json"))
    assert r.exit_code == 0, r.stderr
    assert (out / "paper.json").exists() and (out / "sub" / "photo.json").exists()
    assert not (out / "paper.md").exists() and not (tree / "paper.json").exists()


# ----------------------------------------------------------------------------- exit 2, 4, 5, 6, 7, 1


def test_exit_2_usage_errors(tree: Path) -> None:
    assert run("convert", str(tree), "--mode", "huge").exit_code == 2
    assert run("convert", str(tree), "--no-such-option").exit_code == 2
    assert run("convert", str(tree), "--format", "docx").exit_code == 2


def test_exit_4_no_supported_input(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing to convert")
    r = run("convert", "--model", "unused", str(tmp_path))
    assert r.exit_code == 4 and "no supported input" in r.stderr


def test_exit_5_output_not_writable(scripted_checkpoint: Path, tree: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    r = run(*convert_args(scripted_checkpoint, str(tree), "-o", str(blocker / "out")))
    assert r.exit_code == 5 and "output" in r.stderr


def test_exit_6_model_unavailable_offline(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    r = run("convert", "--model", "deepseek-ai/DeepSeek-OCR", str(tree))
    assert r.exit_code == 6
    assert "HF_HUB_OFFLINE" in r.stderr and "folder" in r.stderr


def test_exit_7_out_of_memory_at_batch_1(scripted_checkpoint: Path, tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPOCR_MEMORY_BUDGET", "1")  # bytes: not even one page fits
    r = run(*convert_args(scripted_checkpoint, str(tree)))
    assert r.exit_code == 7 and "memory" in r.stderr.lower()


def test_exit_1_unexpected_bug_is_reported(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import deepocr_cli.run.convert as pipeline

    def boom(*a, **k):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(pipeline, "find_documents", boom)
    r = run("convert", "--model", "unused", str(tree))
    assert r.exit_code == 1 and "simulated bug" in r.stderr and "-v" in r.stderr


# ----------------------------------------------------------------------------- exit 3


def test_exit_3_truncated_pages_are_kept_and_flagged(random_checkpoint: Path, tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "long.pdf", pages=1)
    r = run("convert", "--model", str(random_checkpoint), "--mode", "tiny", "--max-new-tokens", "6", str(pdf), "--json")
    assert r.exit_code == 3
    data = json.loads((tmp_path / "long.json").read_text())
    assert data["pages"][0]["truncated"] is True and data["pages"][0]["generated_tokens"] == 6
    assert "truncated" in (tmp_path / "long.md").read_text().lower()
    assert json.loads(r.stdout)["files"][0]["truncated_pages"] == 1


def test_exit_3_bad_inputs_do_not_stop_the_batch(scripted_checkpoint: Path, tmp_path: Path) -> None:
    make_pdf(tmp_path / "good.pdf", pages=1)
    (tmp_path / "empty.pdf").write_bytes(b"")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\ngarbage")
    (tmp_path / "text.png").write_text("not an image")
    enc = fitz.open()
    enc.new_page().insert_text((50, 50), "secret")
    enc.save(tmp_path / "locked.pdf", encryption=fitz.PDF_ENCRYPT_AES_256, user_pw="u", owner_pw="o")
    r = run(*convert_args(scripted_checkpoint, str(tmp_path), "--json"))
    assert r.exit_code == 3, r.stderr
    files = {Path(f["source"]).name: f for f in json.loads(r.stdout)["files"]}
    assert files["good.pdf"]["status"] == "converted"
    for bad in ("empty.pdf", "broken.pdf", "text.png", "locked.pdf"):
        assert files[bad]["status"] == "failed" and files[bad]["reason"], bad
        assert "\n" not in files[bad]["reason"]
    assert "password" in files["locked.pdf"]["reason"]
    assert not (tmp_path / "broken.md").exists() and not (tmp_path / "locked.json").exists()


# ----------------------------------------------------------------------------- pipelines


def test_stdin_paths_and_stdout_markdown(scripted_checkpoint: Path, tree: Path) -> None:
    paths = f"{tree / 'paper.pdf'}\n{tree / 'sub' / 'photo.png'}\n"
    r = run(*convert_args(scripted_checkpoint, "-", "--json"), input=paths)
    assert r.exit_code == 0 and json.loads(r.stdout)["totals"]["converted"] == 2
    r0 = run(*convert_args(scripted_checkpoint, "-", "-0", "--json", "--force"), input=f"{tree / 'paper.pdf'}\0")
    assert r0.exit_code == 0 and json.loads(r0.stdout)["totals"]["converted"] == 1
    out = run(*convert_args(scripted_checkpoint, str(tree / "sub" / "photo.png"), "--stdout"))
    assert out.exit_code == 0 and out.stdout.startswith("<!-- page 1 -->") and "# Hello deepocr" in out.stdout
    assert "deepocr:" not in out.stdout  # logs and summary go to stderr


def test_plan_json_loads_no_model(tree: Path) -> None:
    r = run("plan", str(tree), "--json")
    assert r.exit_code == 0, r.stderr
    plan = json.loads(r.stdout)
    pages = [p for f in plan["files"] for p in f["pages"]]
    assert len(pages) == 3
    # the photo holds one line of small print: not a blank page
    photo = next(f for f in plan["files"] if f["source"].endswith("photo.png"))["pages"][0]
    assert photo["blank"] is False and photo["vision_tokens"] > 0
    assert {p["mode"] for p in pages} <= {"tiny", "small", "base", "large", "gundam"}
    assert plan["vision_tokens"]["gundam"] >= plan["vision_tokens"]["auto"]


def test_plan_estimates_time_once_convert_has_measured_the_model(
    scripted_checkpoint: Path, tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    before = json.loads(run("plan", str(tree), "--json", "--model", str(scripted_checkpoint)).stdout)
    assert before["estimated_seconds"] is None
    assert run(*convert_args(scripted_checkpoint, str(tree))).exit_code == 0  # --mode tiny: measures tiny only
    after = json.loads(run("plan", str(tree), "--json", "--model", str(scripted_checkpoint)).stdout)
    est = after["estimated_seconds"]
    assert est["device"] == "cpu" and est["tiny"] > 0 and est["gundam"] is None


def test_infer_json_exposes_fidelity_fields(scripted_checkpoint: Path, tmp_path: Path) -> None:
    png = make_png(tmp_path / "p.png")
    r = run("infer", str(png), "--model", str(scripted_checkpoint), "--mode", "small", "--json")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["num_vision_tokens"] == 111 and out["prompt_ids"][0] == 0
    assert out["prompt_ids"].count(128815) == 111
    assert len(out["first_top5"]) == 5 and out["text"].startswith("<|ref|>image")


# ----------------------------------------------------------------------------- signals and concurrency


def _cli(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "deepocr_cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.slow
def test_exit_130_sigterm_keeps_finished_pages_and_rerun_resumes(random_checkpoint: Path, tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "book.pdf", pages=6)
    args = ["convert", "--model", str(random_checkpoint), "--mode", "tiny", "--max-new-tokens", "40",
            "--batch-size", "1", str(pdf), "-v"]
    proc = _cli(*args)
    partial = tmp_path / ".book.deepocr-partial.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until at least two pages are recorded
        if partial.exists() and len(partial.read_text().splitlines()) >= 3:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert not (tmp_path / "book.json").exists()  # nothing half-written
    done_before = len(partial.read_text().splitlines()) - 1
    assert 2 <= done_before < 6
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))
    # Rerun: resumes, converts only the missing pages, same result as a straight run.
    r = subprocess.run([sys.executable, "-m", "deepocr_cli", *args, "--json"], capture_output=True, text=True)
    assert r.returncode == 3  # random checkpoint: pages are truncated
    # The document is partial (truncated pages), so its pages stay on record: --retry-truncated reruns only those.
    assert partial.exists()
    resumed = json.loads((tmp_path / "book.json").read_text())
    assert [p["index"] for p in resumed["pages"]] == list(range(6))
    straight = tmp_path / "straight"
    straight.mkdir()
    make_pdf(straight / "book.pdf", pages=6)
    subprocess.run([sys.executable, "-m", "deepocr_cli", *args[:-2], str(straight / "book.pdf")], capture_output=True)
    ref = json.loads((straight / "book.json").read_text())
    assert [p["raw_text"] for p in resumed["pages"]] == [p["raw_text"] for p in ref["pages"]]


@pytest.mark.slow
def test_concurrent_runs_convert_each_document_once(random_checkpoint: Path, tmp_path: Path) -> None:
    for i in range(3):
        make_pdf(tmp_path / f"d{i}.pdf", pages=2)
    args = ["convert", "--model", str(random_checkpoint), "--mode", "tiny", "--max-new-tokens", "12",
            str(tmp_path), "--json", "-q"]
    a, b = _cli(*args), _cli(*args)
    out_a, _ = a.communicate(timeout=300)
    out_b, _ = b.communicate(timeout=300)
    files = json.loads(out_a)["files"] + json.loads(out_b)["files"]
    converted = sorted(Path(f["source"]).name for f in files if f["status"] in ("converted", "partial"))
    assert converted == ["d0.pdf", "d1.pdf", "d2.pdf"]  # each exactly once across both runs
    assert {f["status"] for f in files} <= {"partial", "converted", "busy", "skipped"}
    for i in range(3):
        assert len(json.loads((tmp_path / f"d{i}.json").read_text())["pages"]) == 2


def test_infer_several_images_prints_one_json_line_each_in_input_order(random_checkpoint: Path, tmp_path: Path) -> None:
    pngs = [make_png(tmp_path / f"p{i}.png") for i in range(3)]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    args = ["infer", str(pngs[0]), str(bad), str(pngs[1]), str(pngs[2]), "--model", str(random_checkpoint),
            "--mode", "tiny", "--max-new-tokens", "9", "--json"]
    lines = {}
    for slots in ("1", "3"):
        r = run(*args, "--batch-size", slots)
        assert r.exit_code == 3, r.stderr  # truncated (the random checkpoint never stops) and one bad image
        lines[slots] = [json.loads(line) for line in r.stdout.splitlines()]
        assert "slot occupancy" in r.stderr and "tok/s" in r.stderr
    assert [o["image"] for o in lines["1"]] == [str(pngs[0]), str(bad), str(pngs[1]), str(pngs[2])]
    assert "cannot read image" in lines["1"][1]["error"]
    assert all(len(o["generated_ids"]) == 9 for i, o in enumerate(lines["1"]) if i != 1)
    for one, three in zip(lines["1"], lines["3"], strict=True):  # same output whatever the slot count
        one.pop("seconds", None), three.pop("seconds", None)
        top1, top3 = one.pop("first_top5", []), three.pop("first_top5", [])
        assert one == three and [t["id"] for t in top1] == [t["id"] for t in top3]  # logits equal to ~1e-7


def test_convert_json_report_carries_engine_metrics(scripted_checkpoint: Path, tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "book.pdf", pages=3)
    r = run(*convert_args(scripted_checkpoint, str(pdf), "--json", "--batch-size", "2"))
    assert r.exit_code == 0, r.stderr
    engine = json.loads(r.stdout)["engine"]
    assert engine["pages"] >= 3 and engine["generated_tokens"] > 0 and engine["slots"] == 2
    assert 0 < engine["slot_occupancy"] <= 1 and engine["kv_peak_bytes"] > 0
    assert engine["preemptions"] == 0 and engine["generated_tok_per_s"] > 0
