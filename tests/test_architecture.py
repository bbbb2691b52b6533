"""The package's layout holds: every module imports in a fresh interpreter, no import cycles, the rooms import
in one direction, and no module grows past the size a reader can hold (docs/architecture.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "deepocr_cli"

#: Which rooms each room may import (besides the top-level modules: errors, options, prompts). Lower rooms never
#: reach up: inputs know nothing of planning, outputs nothing of the run, the model nothing of documents.
ALLOWED = {
    "inputs": set(),
    "planning": {"inputs"},
    "outputs": {"planning", "inputs"},  # renderers of pdf/html read the source again (inputs.render)
    "model": {"planning"},
    "engine": {"model", "planning"},
    "scale": {"model", "engine", "planning"},  # workers hold engines; the run above drives them
    "run": {"inputs", "planning", "outputs", "model", "engine", "scale"},
}
#: Top-level modules that sit above the rooms (they drive them) and may import anything.
DRIVERS = {"cli", "cli_support", "progress", "sample_docs", "__main__", "__init__"}
MAX_LINES = 420


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = path.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(path: Path, module: str, top_level_only: bool) -> set[str]:
    """deepocr_cli modules imported by a file (at import time only, or anywhere)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.If) and top_level_only:  # `if TYPE_CHECKING:` blocks import nothing at run time
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("deepocr_cli"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("deepocr_cli"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    known = _modules()
    # a module's own package (``from deepocr_cli import prompts`` names ``deepocr_cli``) is no dependency
    return {m for m in found if m in known and m != module and not module.startswith(m + ".")}


def test_every_module_imports_in_a_fresh_interpreter() -> None:
    names = sorted(_modules())
    code = "import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module(n)\nprint('ok', len(sys.argv) - 1)"
    r = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == f"ok {len(names)}"


def test_no_import_cycles() -> None:
    mods = _modules()
    graph = {m: _imports(p, m, top_level_only=True) for m, p in mods.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = stack[stack.index(n):] + [n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_cycle_check_finds_a_cycle(tmp_path: Path) -> None:
    """The walk above reads real import statements: a planted cycle is seen."""
    a = tmp_path / "a.py"
    a.write_text("from deepocr_cli.outputs.parse import Block\n", encoding="utf-8")
    assert "deepocr_cli.outputs.parse" in _imports(a, "x", top_level_only=True)


def _room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PKG / parts[1]).is_dir()) else None


def test_rooms_import_in_one_direction() -> None:
    bad = []
    for m, path in _modules().items():
        room = _room(m)
        if room is None:
            continue
        for n in _imports(path, m, top_level_only=False):
            other = _room(n)
            if other is None:
                if n.split(".")[1] in DRIVERS:
                    bad.append(f"{m} imports the driver {n}")
            elif other != room and other not in ALLOWED.get(room, set()):
                bad.append(f"{m} ({room}) imports {n} ({other})")
    assert not bad, "\n".join(bad)


def test_modules_stay_small() -> None:
    big = {m: n for m, p in _modules().items() if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines (split them by role): {big}"


def test_public_api_is_lazy_and_complete() -> None:
    code = (
        "import sys, deepocr_cli\n"
        "assert 'torch' not in sys.modules and 'pymupdf' not in sys.modules, 'import deepocr_cli loads heavy modules'\n"
        "from deepocr_cli import ConvertOptions, ExitCode, convert, plan\n"
        "from deepocr_cli.run.convert import convert as c\n"
        "from deepocr_cli.planning.plan import plan_documents as p\n"
        "assert convert is c and plan is p and ExitCode.PARTIAL == 3 and ConvertOptions().mode == 'auto'\n"
        "print('ok')"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
