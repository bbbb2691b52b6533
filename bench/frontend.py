"""Front-end throughput: pages/s that rendering + per-mode preprocessing can feed the model.

The pipeline renders in one thread (MuPDF is not thread-safe) and preprocesses in a thread pool;
this measures that structure with 1 worker and with N workers, side by side in one run.

    python bench/frontend.py [--pages 40] [--mode gundam] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pymupdf  # noqa: E402

from deepocr_cli.inputs.render import open_document  # noqa: E402
from deepocr_cli.model.image_processing import prepare_image  # noqa: E402
from deepocr_cli.planning.modes import Mode, render_size  # noqa: E402
from deepocr_cli.sample_docs import make_sample_docs  # noqa: E402


def build_pdf(folder: Path, pages: int) -> Path:
    """A PDF of `pages` pages cycling through the sample documents' PDF pages."""
    samples = [p for p in make_sample_docs(folder / "samples") if p.suffix == ".pdf"]
    out = pymupdf.open()
    for i in range(pages):
        with pymupdf.open(samples[i % len(samples)]) as src:
            out.insert_pdf(src)
    path = folder / "bench.pdf"
    out.save(path)
    return path


def run(pdf: Path, mode: Mode, workers: int) -> float:
    """Pages/s for render (this thread) + preprocess (pool of `workers`)."""
    t0 = time.perf_counter()
    with open_document(pdf) as reader, ThreadPoolExecutor(workers) as pool:
        futures = []
        for i in range(reader.page_count):
            w, h = reader.page_size(i)
            image = reader.render(i, render_size(mode, w, h))
            futures.append(pool.submit(prepare_image, image, mode))
        for f in futures:
            f.result()
        n = reader.page_count
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=40)
    ap.add_argument("--mode", default="gundam")
    ap.add_argument("--workers", default="1,2")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pdf = build_pdf(Path(tmp), args.pages)
        mode = Mode(args.mode)
        run(pdf, mode, 1)  # warm-up
        print(f"front end, {args.pages} pages, mode {mode.value}")
        print(f"{'workers':>8} {'pages/s':>9} {'x vs 1':>7}")
        base = None
        for w in (int(x) for x in args.workers.split(",")):
            rate = run(pdf, mode, w)
            base = base or rate
            print(f"{w:>8} {rate:>9.1f} {rate / base:>7.2f}")


if __name__ == "__main__":
    main()
