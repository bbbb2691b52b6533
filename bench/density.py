"""Benchmark the per-page text estimator and the auto mode choice on the real-document corpus.

Usage: python bench/density.py /tmp/deepocr-corpus [--target 10] [--markdown]

Prints (a) image-only estimation error against the text-layer truth, (b) vision tokens of auto vs fixed modes,
(c) estimator speed, (d) a per-category breakdown and per-page rows. The corpus comes from
/work/shared/corpus/build_corpus.sh; truth = the manifest's DeepSeek-tokenizer counts (`ds_tokens`).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import pymupdf
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from deepocr_cli.planning.autoplan import choose_mode  # noqa: E402
from deepocr_cli.planning.estimate import (  # noqa: E402
    TextEstimate,
    _render_gray,
    estimate_image,
    estimate_image_array,
    estimate_pdf_page,
)
from deepocr_cli.planning.modes import Mode  # noqa: E402
from deepocr_cli.planning.plan import fixed_mode_tokens  # noqa: E402


def timed(fn, *args, repeat: int = 3) -> tuple[object, float]:
    """Result and best-of-``repeat`` wall time in ms."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn(*args)
        best = min(best, (time.perf_counter() - t) * 1e3)
    return out, best


def run(corpus: Path, target: float) -> list[dict]:
    """One result row per corpus page with a known token count or an image."""
    rows = [json.loads(line) for line in (corpus / "public" / "manifest.jsonl").read_text().splitlines()]
    out = []
    docs: dict[str, pymupdf.Document] = {}
    for r in rows:
        res = {
            "doc": r["doc_id"],
            "page": r["page_index"],
            "category": r["category"],
            "truth": r.get("ds_tokens"),
        }
        path = corpus / r["file"]
        if path.suffix.lower() == ".pdf":
            doc = docs.setdefault(r["file"], pymupdf.open(path))
            page = doc[r["page_index"]]
            w, h, kind = page.rect.width, page.rect.height, "pdf"
            est, res["ms_page"] = timed(estimate_pdf_page, page)
            gray, res["ms_render"] = timed(_render_gray, page)
            img_est, res["ms_image"] = timed(estimate_image_array, gray)
        else:
            with Image.open(path) as im:
                im.load()
                w, h, kind = *im.size, "image"
                est, res["ms_page"] = timed(estimate_image, im)
                img_est, res["ms_image"] = est, res["ms_page"]
                res["ms_render"] = 0.0
        assert isinstance(est, TextEstimate) and isinstance(img_est, TextEstimate)
        res.update(source=est.source, note=est.note, est=est.tokens, img=img_est.tokens, w=w, h=h)
        choice = choose_mode(est, w, h, max_compression=target)
        res["auto_mode"], res["auto_vt"] = str(choice.mode), choice.vision_tokens
        res["gundam_vt"] = fixed_mode_tokens(kind, w, h, Mode.GUNDAM)
        res["base_vt"] = fixed_mode_tokens(kind, w, h, Mode.BASE)
        if res["truth"] is not None:
            res["true_ratio"] = res["truth"] / choice.vision_tokens
        out.append(res)
    return out


def report(res: list[dict], target: float, markdown: bool) -> str:
    """Text (or Markdown) tables of the four figures."""
    lines: list[str] = []
    sep = "|" if markdown else " "

    def table(header: list[str], body: list[list[str]]) -> None:
        if markdown:
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "---|" * len(header))
            lines.extend("| " + " | ".join(row) + " |" for row in body)
        else:
            widths = [max(len(x) for x in col) for col in zip(header, *body, strict=True)]
            for row in [header, *body]:
                lines.append(sep.join(x.ljust(n) for x, n in zip(row, widths, strict=True)))
        lines.append("")

    text_pages = [
        r for r in res if r["truth"] and r["category"] != "text_layer_trap" and r["source"] == "text_layer"
    ]
    errs = [r["img"] / r["truth"] - 1 for r in text_pages]
    within = sum(abs(e) <= 0.25 for e in errs) / len(errs)
    lines.append(
        f"(a) image-only estimate vs text-layer truth, {len(errs)} text pages: within +-25%: "
        f"{within:.0%} (target >= 80%), median abs error {statistics.median(abs(e) for e in errs):.0%}, "
        f"median signed error {statistics.median(errs):+.0%}"
    )
    judged = [r for r in res if r["truth"]]
    over = [r for r in judged if r["true_ratio"] > target]
    auto, gundam, base = (sum(r[k] for r in judged) for k in ("auto_vt", "gundam_vt", "base_vt"))
    lines.append(
        f"(b) vision tokens on {len(judged)} pages with known tokens: auto {auto}, always-Gundam {gundam}, "
        f"always-Base {base}; auto saves {1 - auto / gundam:.0%} vs Gundam (target >= 40%); pages whose "
        f"true ratio exceeds {target:g}: {len(over)} ({len(over) / len(judged):.0%}, target <= 5%)"
        + (": " + ", ".join(f"{r['doc']}p{r['page']} {r['true_ratio']:.1f}" for r in over) if over else "")
    )
    med = statistics.median
    lines.append(
        f"(c) ms/page (median, best of 3): estimate_pdf_page "
        f"{med(r['ms_page'] for r in res if r['source'] == 'text_layer'):.1f} (text-layer path), "
        f"{med(r['ms_page'] for r in res if r['source'] == 'image'):.1f} (image path incl. render); "
        f"render {med(r['ms_render'] for r in res if r['ms_render']):.1f}; image analysis "
        f"{med(r['ms_image'] for r in res):.1f} (p90 {statistics.quantiles([r['ms_image'] for r in res], n=10)[-1]:.1f}, "
        f"max {max(r['ms_image'] for r in res):.1f}, the largest raster: "
        f"{max(res, key=lambda r: r['ms_image'])['doc']})"
    )
    lines.append("")
    cats: dict[str, list[dict]] = defaultdict(list)
    for r in res:
        cats[r["category"]].append(r)
    body = []
    for cat, rs in sorted(cats.items()):
        known = [r for r in rs if r["truth"]]
        e = [r["img"] / r["truth"] - 1 for r in known]
        body.append(
            [
                cat,
                str(len(rs)),
                f"{med(e):+.0%}" if e else "-",
                " ".join(sorted({r["auto_mode"] for r in rs})),
                str(sum(r["auto_vt"] for r in rs)),
                str(sum(r["gundam_vt"] for r in rs)),
                str(sum(r["true_ratio"] > target for r in known)),
            ]
        )
    table(
        ["category", "pages", "img err (median)", "auto modes", "auto vt", "gundam vt", "over target"], body
    )
    body = [
        [
            f"{r['doc']}p{r['page']}",
            r["category"],
            r["source"],
            str(r["truth"]),
            f"{r['est']:.0f}",
            f"{r['img']:.0f}",
            f"{r['img'] / r['truth'] - 1:+.0%}" if r["truth"] else "-",
            r["auto_mode"],
            str(r["auto_vt"]),
            f"{r['true_ratio']:.1f}" if "true_ratio" in r else "-",
            r["note"][:50],
        ]
        for r in res
    ]
    table(
        [
            "page",
            "category",
            "source",
            "true tok",
            "est",
            "img est",
            "img err",
            "auto",
            "vt",
            "true ratio",
            "note",
        ],
        body,
    )
    return "\n".join(lines)


def main() -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", type=Path, help="corpus dir built by build_corpus.sh")
    ap.add_argument("--target", type=float, default=10.0, help="max text tokens per vision token")
    ap.add_argument("--markdown", action="store_true", help="Markdown tables for BENCHMARKS.md")
    args = ap.parse_args()
    res = run(args.corpus, args.target)
    print(
        f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}, "
        f"PyMuPDF {pymupdf.VersionBind}"
    )
    print(report(res, args.target, args.markdown))


if __name__ == "__main__":
    main()
