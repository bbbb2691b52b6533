"""Run the loop detector over real model outputs you have (none are bundled): every ``.txt``/``.mmd`` file is one page
(``<--- Page Split --->`` separates the pages of an upstream ``.mmd``), and every string field named ``text`` or
``raw_text`` inside a ``.json`` file is one page. Prints one line per page (flagged or not) and the totals, and
checks that each page's Markdown is clean CommonMark (tests/mdcheck.py).

    python bench/loops_on_real_outputs.py DIR_OR_FILE ...
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from mdcheck import assert_clean_markdown  # noqa: E402

from deepocr_cli.outputs.reparse import render_raw  # noqa: E402
from deepocr_cli.outputs.repetition import find_loops  # noqa: E402


def _texts(obj: object) -> Iterator[str]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in ("text", "raw_text") and isinstance(value, str):
                yield value
            else:
                yield from _texts(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _texts(value)


def pages(path: Path) -> Iterator[tuple[str, str]]:
    """(label, raw text) of every page under ``path``."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if f.suffix == ".json":
            for k, text in enumerate(_texts(json.loads(f.read_text(encoding="utf-8"))), 1):
                yield f"{f.name}#{k}", text
        elif f.suffix in (".txt", ".mmd"):
            for k, text in enumerate(f.read_text(encoding="utf-8").split("<--- Page Split --->"), 1):
                yield f"{f.name}#{k}", text


def main() -> None:
    total = flagged = unclean = 0
    for arg in sys.argv[1:]:
        for label, text in pages(Path(arg)):
            total += 1
            loops = find_loops(text)
            task = "markdown" if "<|ref|>" in text else "free"
            try:
                assert_clean_markdown(render_raw(text, task=task))
            except AssertionError as e:
                unclean += 1
                print(f"  unclean Markdown: {label}: {e}")
            flagged += bool(loops)
            desc = "; ".join(f"{lp.kind} x{lp.copies} '{lp.unit[:50]}'" for lp in loops) or "-"
            print(f"{label[:48]:48} {len(text):7d} {desc}")
    print(f"\n{total} pages, {flagged} with a loop, {unclean} with unclean Markdown")


if __name__ == "__main__":
    main()
