"""What reading a page's output costs next to generating it: loop detection (exact copies only, then all three
detectors: exact, counting, drifting) and the whole page parse, per page, side by side in one run.

Runs on the golden raw outputs (tests/data/raw) and on synthetic full pages the size of the 8192-token limit
(distinct prose, a long table of blank rows, a long loop), and prints milliseconds per page side by side. The
runner calls loop detection twice per page (the retry decision and the parse), so twice the first column is the
CPU a page costs on top of the parse.

    python bench/parse_cost.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deepocr_cli.outputs.page import read_page  # noqa: E402
from deepocr_cli.outputs.repetition import _exact, _tokenize, find_loops  # noqa: E402


def synthetic() -> dict[str, str]:
    """Pages of about 30,000 characters (~8k tokens), the largest a page can be."""
    words = " ".join(f"word{(i * 7919) % 5003}" for i in range(5200))
    prose = "\n\n".join(
        f"<|ref|>text<|/ref|><|det|>[[100, {i}, 900, {i + 9}]]<|/det|>\n{words[i * 300:(i + 1) * 300]}"
        for i in range(100)
    )
    blank = "<|ref|>table<|/ref|><|det|>[[50, 50, 950, 950]]<|/det|>\n<table>" + (
        "<tr><td></td><td></td><td></td><td></td><td></td></tr>" * 700) + "</table>"
    loop = "<|ref|>text<|/ref|><|det|>[[100, 100, 900, 900]]<|/det|>\n" + (
        "The Board shall meet at least four times a year at the registered office of the Company.\n" * 340)
    return {"8k prose, 100 blocks": prose, "8k blank-row table": blank, "8k one-line loop": loop}


def timed(fn, text: str, repeat: int) -> float:  # noqa: ANN001 - a callable on text
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(text)
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    golden = {p.stem: p.read_text(encoding="utf-8") for p in sorted((ROOT / "tests" / "data" / "raw").glob("*.txt"))}
    rows = []
    for name, text in [*golden.items(), *synthetic().items()]:
        loops = find_loops(text)
        rows.append((name, len(text), timed(lambda t: _exact(t, _tokenize(t)), text, args.repeat),
                     timed(find_loops, text, args.repeat),
                     timed(lambda t: read_page(t, 1191, 1684), text, args.repeat), len(loops)))
    print(f"{'page':42} {'chars':>7} {'exact ms':>9} {'loops ms':>9} {'parse ms':>9} {'loops':>5}")
    for name, chars, t_exact, t_loop, t_parse, n in rows:
        print(f"{name[:42]:42} {chars:7d} {t_exact:9.2f} {t_loop:9.2f} {t_parse:9.2f} {n:5d}")
    g = rows[: len(golden)]
    print(f"\n{len(g)} golden pages: median exact {statistics.median(r[2] for r in g):.2f} ms, "
          f"median loops {statistics.median(r[3] for r in g):.2f} ms, "
          f"median parse {statistics.median(r[4] for r in g):.2f} ms, pages with a loop: {sum(r[5] > 0 for r in g)}")


if __name__ == "__main__":
    main()
