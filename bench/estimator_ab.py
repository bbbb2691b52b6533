"""The image estimator of the working tree against the one of an earlier git revision, on the same pages.

Usage: python bench/estimator_ab.py --rev REV [--pdf FILE ...] [--pdf-tree DIR --sample N --seed S
       --exclude-manifest manifest.jsonl] [--cjk-pdf FILE ...] [--corpus DIR]

Page sets (each optional but the synthetic one): the synthetic pages of bench/calibrate_image.py; real PDFs
(--pdf, plus --sample random PDFs drawn from --pdf-tree, 2 pages each); Chinese/Japanese PDFs (--cjk-pdf, 4 pages
each); the benchmark corpus's text pages (--corpus, as bench/density.py counts them). Truth = the DeepSeek BPE
count of each page's text layer. Prints per set and version the share of pages whose image-only estimate is within
+-25% of the truth and the median signed error, then the analysis time of both versions measured interleaved on the
same rasters (median per-page ratio; absolute times on a shared 2-core machine are only indicative).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pymupdf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import calibrate_image as cal  # noqa: E402

from deepocr_cli.planning import image_estimate as current  # noqa: E402
from deepocr_cli.planning.estimate import _render_gray  # noqa: E402


def load_revision(rev: str):
    """The image estimator as of git revision ``rev``, imported as a module of its own.

    Before the layout of issue #11 it was one file, ``deepocr_cli/estimate_image.py``; since then it is
    ``deepocr_cli/planning/image_estimate.py`` and imports its steps (ink, textlines) from the working tree.
    """
    src = None
    for path in ("deepocr_cli/planning/image_estimate.py", "deepocr_cli/estimate_image.py"):
        run = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{path}"], capture_output=True, text=True)
        if run.returncode == 0:
            src = run.stdout
            break
    if src is None:
        raise SystemExit(f"no image estimator at revision {rev}")
    # the old single file took TextEstimate and a constant from deepocr_cli.estimate, which moved
    src = src.replace("from deepocr_cli.estimate import", "from deepocr_cli.planning.textest import")
    path = Path(tempfile.mkdtemp()) / f"estimate_image_{rev[:12]}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def corpus_pages(corpus: Path):
    """Yield (name, page, truth) for the corpus's text pages (as bench/density.py judges image-only estimates)."""
    docs: dict[str, pymupdf.Document] = {}
    for line in (corpus / "public" / "manifest.jsonl").read_text().splitlines():
        r = json.loads(line)
        if not r.get("ds_tokens") or r["category"] == "text_layer_trap" or not r["file"].endswith(".pdf"):
            continue
        page = docs.setdefault(r["file"], pymupdf.open(corpus / r["file"]))[r["page_index"]]
        if cal.text_layer_quality(page)[0]:
            yield f"{r['doc_id']}p{r['page_index']}", page, r["ds_tokens"]


def main() -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", required=True, help="git revision to compare with (e.g. a commit before a change)")
    ap.add_argument("--pdf", type=Path, nargs="*", default=[], help="real PDFs, all pages")
    ap.add_argument("--pdf-tree", type=Path, help="a folder of real PDFs to draw --sample from")
    ap.add_argument("--sample", type=int, default=100)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--exclude-manifest", type=Path, help="corpus manifest.jsonl: skip its source folders")
    ap.add_argument("--cjk-pdf", type=Path, nargs="*", default=[], help="Chinese/Japanese PDFs, 4 pages each")
    ap.add_argument("--corpus", type=Path, help="benchmark corpus folder (build_corpus.sh)")
    args = ap.parse_args()
    old = load_revision(args.rev)
    count = cal._count_tokens()
    sets: dict[str, list[tuple[str, np.ndarray, int]]] = {
        "synthetic": [
            (row["name"], _render_gray(page), count(text)) for row, page, text in cal.synthetic_pages(None)
        ]
    }
    # rendered while pdf_pages holds each document open
    real = [(n, _render_gray(p), t) for n, p, t in cal.pdf_pages(args.pdf)]
    if args.pdf_tree:
        picked = cal.sample_pdfs(args.pdf_tree, args.sample, args.seed, args.exclude_manifest)
        real += [(n, _render_gray(p), t) for n, p, t in cal.pdf_pages(picked, pages_per_pdf=2, seed=args.seed)]
    if real:
        sets["real PDFs"] = real
    if args.cjk_pdf:
        sets["CJK PDFs"] = [(n, _render_gray(p), t) for n, p, t in cal.pdf_pages(args.cjk_pdf, 4, args.seed)]
    if args.corpus:
        sets["corpus"] = [(n, _render_gray(p), t) for n, p, t in corpus_pages(args.corpus)]
    ratios = []
    print(f"image-only estimate within +-25% of the text-layer truth (median signed error): {args.rev} -> working tree")
    for label, pages in sets.items():
        err = {"old": [], "new": []}
        for _, gray, truth in pages:
            t0 = time.perf_counter()
            a = old.estimate_image_array(gray).tokens
            t1 = time.perf_counter()
            b = current.estimate_image_array(gray).tokens
            t2 = time.perf_counter()
            ratios.append((t2 - t1) / (t1 - t0))
            err["old"].append(a / truth - 1)
            err["new"].append(b / truth - 1)
        cells = [
            f"{sum(abs(e) <= 0.25 for e in v) / len(v):.0%} ({statistics.median(v):+.0%})" for v in err.values()
        ]
        print(f"  {label}: {len(pages)} pages: {cells[0]} -> {cells[1]}")
    print(f"analysis time, working tree / {args.rev}: median ratio {statistics.median(ratios):.2f} over {len(ratios)} pages")


if __name__ == "__main__":
    main()
