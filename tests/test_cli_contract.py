"""What a person and a cron job can rely on from the command line (issue 12, points 5-7 and 11-15): usage and
environment errors fail before the model loads, Markdown links resolve for any file name, `--json` is always one
report, `--help` and `plan` read well at 80 columns and in pipes, and the README tells the truth."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest
from test_cli import make_pdf, make_png
from typer.testing import CliRunner

from deepocr_cli.cli import app
from deepocr_cli.errors import ExitCode
from deepocr_cli.run.state import DocumentLock

runner = CliRunner()
README = Path(__file__).parents[1] / "README.md"


@pytest.fixture()
def no_model(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Fails the test if a run loads the model; the list counts attempts."""
    import deepocr_cli.run.convert as convert_mod

    loads: list[int] = []

    def load(options):
        loads.append(1)
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(convert_mod, "_load_engine", load)
    return loads


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    make_pdf(root / "paper.pdf", pages=1)
    make_png(root / "photo.png")
    return root


def invoke(*args: str, **kw):
    return runner.invoke(app, list(args), **kw)


def one_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, text
    return lines[0]


# ----------------------------------------------------------------------------- 5. unwritable output: exit 5 first


def test_output_under_a_file_exits_5_naming_the_path_before_loading(scripted_checkpoint: Path, tree: Path,
                                                                      tmp_path: Path, no_model: list) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    r = invoke("convert", "--model", str(scripted_checkpoint), str(tree), "-o", str(blocker / "out"), "-q")
    assert r.exit_code == 5 and str(blocker / "out") in one_line(r.stderr) and not no_model


def test_full_disk_at_start_exits_5_before_loading(scripted_checkpoint: Path, tree: Path, tmp_path: Path,
                                                   no_model: list, monkeypatch: pytest.MonkeyPatch) -> None:
    import deepocr_cli.run.convert as convert_mod

    real = os.statvfs

    class Full:
        def __init__(self, st: os.statvfs_result) -> None:
            self.f_frsize, self.f_bavail = st.f_frsize, 0

    monkeypatch.setattr(convert_mod.os, "statvfs", lambda p: Full(real(p)))
    out = tmp_path / "out"
    r = invoke("convert", "--model", str(scripted_checkpoint), str(tree), "-o", str(out), "-q")
    assert r.exit_code == 5 and not no_model
    line = one_line(r.stderr)
    assert str(out) in line and "no space" in line
    assert not [p for p in out.rglob("*")]  # the probe left nothing behind


def test_read_only_file_system_exits_5_before_loading(scripted_checkpoint: Path, tree: Path, no_model: list) -> None:
    target = Path("/sys/deepocr-out")  # sysfs: read-only even for root
    if not Path("/sys/kernel").is_dir():
        pytest.skip("no read-only /sys here")
    r = invoke("convert", "--model", str(scripted_checkpoint), str(tree), "-o", str(target), "-q")
    assert r.exit_code == 5 and str(target) in one_line(r.stderr) and not no_model


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_exits_5_before_loading(scripted_checkpoint: Path, tree: Path, no_model: list) -> None:
    tree.chmod(0o555)
    try:
        r = invoke("convert", "--model", str(scripted_checkpoint), str(tree), "-q")
    finally:
        tree.chmod(0o755)
    assert r.exit_code == 5 and str(tree) in one_line(r.stderr) and not no_model


# ----------------------------------------------------------------------------- 6. usage errors: exit 2 first


@pytest.mark.parametrize("args", [
    ("--pages", "3-1"), ("--pages", "x"), ("--pages", "0"), ("--device", "tpu"), ("--device", "cuda:x"),
    ("--format", "docx"), ("--format", ""), ("--dtype", "int8"),
])
def test_bad_option_values_exit_2_with_one_line_before_loading(scripted_checkpoint: Path, tree: Path,
                                                               no_model: list, args: tuple[str, ...]) -> None:
    r = invoke("convert", "--model", str(scripted_checkpoint), str(tree), *args)
    assert r.exit_code == 2, (args, r.stderr)
    assert one_line(r.stderr).startswith("deepocr: error: --") and not no_model


def test_infer_refuses_an_unknown_device_or_dtype_with_exit_2(tmp_path: Path) -> None:
    image = make_png(tmp_path / "p.png")
    for args in (("--device", "tpu"), ("--dtype", "int8")):
        r = invoke("infer", str(image), "--model", str(tmp_path / "no-model"), *args)
        assert r.exit_code == 2 and args[0] in r.stderr, args


# ----------------------------------------------------------------------------- 7. nothing to do: no model


def test_every_input_busy_never_loads_the_model(scripted_checkpoint: Path, tree: Path, no_model: list) -> None:
    locks = [DocumentLock(p) for p in (tree / "paper.pdf", tree / "photo.png")]
    assert all(lock.acquire() for lock in locks)  # another run holds them
    try:
        r = invoke("convert", "--model", str(scripted_checkpoint), str(tree), "--json")
    finally:
        for lock in locks:
            lock.release()
    report = json.loads(r.stdout)
    assert r.exit_code == 0 and report["totals"]["busy"] == 2 and not no_model


def test_every_input_up_to_date_never_loads_the_model(scripted_checkpoint: Path, tree: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["convert", "--model", str(scripted_checkpoint), "--mode", "tiny", "--max-new-tokens", "24", str(tree)]
    assert invoke(*args).exit_code == 0
    import deepocr_cli.run.convert as convert_mod

    monkeypatch.setattr(convert_mod, "_load_engine", lambda o: (_ for _ in ()).throw(AssertionError("loaded")))
    r = invoke(*args, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["totals"]["skipped"] == 2


# ----------------------------------------------------------------------------- 11. image links for any name


NAMES = ["a b (1) #2.pdf", "thé [draft] 100%?.pdf", "übersicht & co.png"]


@pytest.mark.parametrize("out", [False, True])
def test_markdown_image_links_resolve_for_any_file_name(scripted_checkpoint: Path, tmp_path: Path, out: bool) -> None:
    from markdown_it import MarkdownIt

    src = tmp_path / "in (1)"
    src.mkdir()
    for name in NAMES:
        make_png(src / name) if name.endswith(".png") else make_pdf(src / name, pages=1)
    extra = ["-o", str(tmp_path / "out #1")] if out else []
    r = invoke("convert", "--model", str(scripted_checkpoint), "--mode", "tiny", "--max-new-tokens", "24",
               "--no-deep", str(src), *extra)
    assert r.exit_code == 0, r.stderr
    written = sorted((tmp_path / "out #1" if out else src).glob("*.md"))
    assert len(written) == len(NAMES)
    md = MarkdownIt("commonmark")
    for path in written:
        images = [child for tok in md.parse(path.read_text(encoding="utf-8")) if tok.type == "inline"
                  for child in tok.children or [] if child.type == "image"]
        assert images, f"{path.name}: no image link parsed"
        for img in images:
            target = unquote(img.attrs["src"])
            assert (path.parent / target).is_file(), f"{path.name}: {img.attrs['src']} does not resolve"


# ----------------------------------------------------------------------------- 12. --json: always one report


def _one_json(stdout: str) -> dict:
    data = json.loads(stdout)  # exactly one document: json.loads rejects anything after it
    assert {"status", "exit_code", "error"} <= set(data)
    return data


def test_json_report_on_every_exit_code(scripted_checkpoint: Path, tree: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty").mkdir()
    cases = {
        ExitCode.USAGE: ["convert", str(tree), "--no-such-option", "--json"],
        ExitCode.NO_INPUT: ["convert", "--model", "unused", str(tmp_path / "empty"), "--json"],
        ExitCode.MODEL: ["convert", "--model", str(tmp_path / "nowhere" / "ckpt"), str(tree), "--json"],
    }
    for code, args in cases.items():
        r = invoke(*args)
        data = _one_json(r.stdout)
        assert r.exit_code == code == data["exit_code"] and data["status"] == "error" and data["error"], code
    r = invoke("convert", str(tree), "--pages", "x", "--json")
    assert r.exit_code == 2 and _one_json(r.stdout)["exit_code"] == 2
    ok = invoke("convert", "--model", str(scripted_checkpoint), "--mode", "tiny", "--max-new-tokens", "24", str(tree),
                "--json")
    data = _one_json(ok.stdout)
    assert ok.exit_code == 0 and data["status"] == "ok" and data["error"] is None

    import deepocr_cli.run.convert as convert_mod

    def interrupted(options):
        raise KeyboardInterrupt

    monkeypatch.setattr(convert_mod, "_load_engine", interrupted)
    r = invoke("convert", "--model", str(scripted_checkpoint), str(tree), "--force", "--json")
    data = _one_json(r.stdout)
    assert r.exit_code == 130 == data["exit_code"] and data["status"] == "interrupted"


def test_stdout_and_json_together_are_refused(tree: Path) -> None:
    r = invoke("convert", str(tree / "paper.pdf"), "--stdout", "--json")
    assert r.exit_code == 2 and "--stdout" in r.stderr and _one_json(r.stdout)["exit_code"] == 2


# ----------------------------------------------------------------------------- 13. --help


@pytest.mark.parametrize("command", [[], ["convert"], ["plan"], ["infer"], ["parse"]])
def test_help_fits_80_columns_without_type_tags(command: list[str]) -> None:
    r = invoke(*command, "--help", env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"})
    assert r.exit_code == 0
    too_long = [ln for ln in r.stdout.splitlines() if len(ln) > 80]
    assert not too_long, too_long
    assert not re.search(r"<(bool|str|int|float|Path|list\[[^]]*\])>", r.stdout), r.stdout
    if command:
        text = r.stdout
        groups = {"infer": ("Model", "Output"), "parse": ("Input", "Output")}.get(command[0], ("Input", "Model", "Output", "Run"))
        for group in groups:
            assert f"─ {group} ─" in text, group
        assert text.rstrip().rfind("Examples:") > text.find("Exit codes:") > 0  # examples come last


# ----------------------------------------------------------------------------- 14. plan


def _plan(*args: str, stdout=subprocess.PIPE) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "deepocr_cli", "plan", *args], stdout=stdout,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "80"})


def test_plan_piped_is_a_plain_table_within_80_columns(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    (root / "deeper" / "and deeper").mkdir(parents=True)
    long_name = "deeper/and deeper/a document with a rather long name, as archives have.pdf"
    make_pdf(root / long_name, pages=2)
    make_png(root / "photo.png")
    proc = _plan(str(root))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert not re.search("[\u2500-\u257f]", out)  # no box drawing
    lines = out.splitlines()
    # Every line fits in 80 columns but for the file name, which comes last and is never cut.
    assert all(len(ln.removesuffix(long_name)) <= 80 for ln in lines), out
    rows = [ln.split(None, 6) for ln in lines if ln[:4].strip().isdigit()]
    assert [r[6] for r in rows] == [long_name, long_name, "photo.png"]
    assert all(r[3] in ("tiny", "small", "base", "large", "gundam") and r[4].isdigit() for r in rows)
    assert "vision tokens" in out and "No time estimate" in out


def test_plan_into_a_closed_pipe_exits_0_quietly(tree: Path) -> None:
    proc = _plan(str(tree))
    proc.stdout.close()  # like `| head` that has read enough before plan writes
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and err == ""


def test_plan_json_is_versioned_relative_and_estimates_time_only_from_measured_rates(
        scripted_checkpoint: Path, tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    link = tmp_path / "ckpt"
    link.symlink_to(scripted_checkpoint, target_is_directory=True)
    r = invoke("plan", str(tree), "--model", str(link), "--json")
    plan = json.loads(r.stdout)
    assert r.exit_code == 0 and plan["schema_version"] == 1
    assert sorted(f["source"] for f in plan["files"]) == ["paper.pdf", "photo.png"]
    assert {f["root"] for f in plan["files"]} == {str(tree)}
    assert plan["estimated_seconds"] is None  # nothing measured yet: no made-up figure
    assert invoke("convert", "--model", str(scripted_checkpoint), "--mode", "tiny", "--max-new-tokens", "24",
                  str(tree), "--force").exit_code == 0
    plan = json.loads(invoke("plan", str(tree), "--model", str(link), "--json", "--device", "cpu").stdout)
    est = plan["estimated_seconds"]
    assert est["device"] == "cpu" and est["tokens_per_second"]["tiny"] > 0 and est["tiny"] > 0
    assert est["base"] is None  # never measured in base mode
    pages = [p for f in plan["files"] for p in f["pages"]]
    expected = sum(max(p["estimate"]["tokens"], 1.0) for p in pages) / est["tokens_per_second"]["tiny"]
    assert est["tiny"] == pytest.approx(expected, abs=0.2)
    # Another checkpoint (another fingerprint) has no measurement.
    assert json.loads(invoke("plan", str(tree), "--json").stdout)["estimated_seconds"] is None


# ----------------------------------------------------------------------------- 15. README


def test_readme_exit_codes_include_busy_and_install_is_true_everywhere() -> None:
    text = README.read_text(encoding="utf-8")
    table = text[text.index("| code |"):]
    table = table[: table.index("\n\n")]
    assert "busy" in table
    for code in ExitCode:
        assert f"| {int(code)} " in table
    assert "https://download.pytorch.org/whl/cpu" in text  # CPU-only: no multi-GB CUDA wheels
    assert re.search(r"https://download\.pytorch\.org/whl/cu\d+", text)  # GPU: a CUDA build
