"""Output-format cost: milliseconds per page to render each `--format` from a finished document, side by side.

The document is real: the project's sample PDFs (`deepocr_cli.sample_docs`) repeated to --pages pages, each page
holding a recorded model output from tests/data/raw (two-column paper, CJK with a table, a table page) parsed
at the size the pipeline renders A4 at (144 dpi). No model runs: this measures only what a format adds after
the model has finished. Every format renders the same document in the same process, --repeat times; the best
run is reported (the least disturbed by other processes on a shared machine).

    python bench/formats.py --pages 20 --repeat 5
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pymupdf

from deepocr_cli.outputs.formats import FORMATS
from deepocr_cli.outputs.parse import parse_grounded
from deepocr_cli.outputs.paths import output_paths
from deepocr_cli.outputs.results import DocResult, PageResult
from deepocr_cli.sample_docs import make_sample_docs

RAW = Path(__file__).resolve().parent.parent / "tests" / "data" / "raw"
RAWS = ("paper_two_column.txt", "cjk.txt", "table_page.txt")


def build_document(folder: Path, n_pages: int) -> DocResult:
    """A PDF of ``n_pages`` sample pages and its DocResult built from recorded model outputs."""
    samples = [p for p in make_sample_docs(folder / "samples") if p.suffix == ".pdf"]
    out = pymupdf.open()
    while out.page_count < n_pages:
        with pymupdf.open(samples[out.page_count % len(samples)]) as src:
            out.insert_pdf(src, from_page=0, to_page=0)
    source = folder / "bench.pdf"
    out.save(source)
    pages = []
    for i, page in enumerate(out):
        w, h = round(page.rect.width * 2), round(page.rect.height * 2)
        text = (RAW / RAWS[i % len(RAWS)]).read_text(encoding="utf-8")
        parsed = parse_grounded(text, w, h)
        pages.append(PageResult(index=i, width=w, height=h, mode="base", grid=(1, 1), vision_tokens=256,
                                image_embeddings=273, raw_text=text, generated_tokens=400, blocks=parsed.blocks))  # fmt: skip
    out.close()
    return DocResult(source, source.name, source.stat().st_size, "0" * 64, n_pages,
                     {"id": "deepseek-ai/DeepSeek-OCR", "revision": None}, {"mode": "base"}, pages)  # fmt: skip


def build_scan(folder: Path) -> DocResult:
    """The sample scan (a JPEG of an A4 page at 100 dpi) with the two-column recorded output."""
    scan = next(p for p in make_sample_docs(folder / "scan") if p.name == "scanned_page.jpg")
    with pymupdf.open(scan) as im:
        w, h = round(im[0].rect.width), round(im[0].rect.height)
    text = (RAW / RAWS[0]).read_text(encoding="utf-8")
    page = PageResult(index=0, width=w, height=h, mode="base", grid=(1, 1), vision_tokens=256, image_embeddings=273,
                      raw_text=text, generated_tokens=400, blocks=parse_grounded(text, w, h).blocks)  # fmt: skip
    return DocResult(scan, scan.name, scan.stat().st_size, "0" * 64, 1, {"id": "deepseek-ai/DeepSeek-OCR"}, {}, [page])


def _table(title: str, doc: DocResult, repeat: int) -> None:
    paths = output_paths(doc.source, doc.source, None)
    n = len(doc.pages)
    for fmt in FORMATS.values():  # first call imports the renderer's modules and builds caches
        fmt.render(doc, paths)
    print(f"{title}: {n} page(s), best of {repeat}; source {doc.size / 1024:.0f} KiB")
    print(f"{'format':<6} {'ms/page':>8} {'KiB/page':>9}  file")
    for fmt in FORMATS.values():
        best, size = float("inf"), 0
        for _ in range(repeat):
            t0 = time.perf_counter()
            data = fmt.render(doc, paths)
            best = min(best, time.perf_counter() - t0)
            size = len(data)
        print(f"{fmt.name:<6} {1000 * best / n:8.3f} {size / 1024 / n:9.1f}  NAME{fmt.suffix}")


def main(argv: list[str] | None = None) -> int:
    """Print one row per format and source kind: best ms/page over the repeats, output size per page."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        _table("PDF source (sample PDFs)", build_document(Path(tmp), args.pages), args.repeat)
        _table("image source (scanned_page.jpg)", build_scan(Path(tmp)), args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
