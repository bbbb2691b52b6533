"""DeepSeek-OCR-2 auto-mode budget on the real-document corpus: vision tokens against always-6-tiles.

Usage: python bench/ocr2_budget.py /tmp/deepocr-corpus [--target 10] [--markdown]

For every corpus page, the auto planner (the same text-density estimate as v1) picks the OCR-2 tile cap
(tiny = global view only, small/base/large = 2/3/4 tiles, gundam = 6); the page's vision tokens are then
compared with the official fixed setting (up to 6 tiles). The true compression ratio uses the manifest's
DeepSeek-tokenizer count (`ds_tokens`): a page above the target is one the plan under-provisioned (escalation
re-runs such a page at 6 tiles when its output runs long). v1's auto-vs-Gundam figures print alongside.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pymupdf
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from deepocr_cli.planning.autoplan import choose_mode  # noqa: E402
from deepocr_cli.planning.estimate import estimate_image, estimate_pdf_page  # noqa: E402
from deepocr_cli.planning.families import OCR2, V1  # noqa: E402
from deepocr_cli.planning.modes import Mode  # noqa: E402
from deepocr_cli.planning.plan import fixed_mode_tokens  # noqa: E402


def run(corpus: Path, target: float) -> list[dict]:
    """One row per corpus page: auto and fixed tokens under both families, true ratios."""
    rows = [json.loads(line) for line in (corpus / "public" / "manifest.jsonl").read_text().splitlines()]
    docs: dict[str, pymupdf.Document] = {}
    out = []
    for r in rows:
        path = corpus / r["file"]
        if path.suffix.lower() == ".pdf":
            page = docs.setdefault(r["file"], pymupdf.open(path))[r["page_index"]]
            w, h, kind = page.rect.width, page.rect.height, "pdf"
            est = estimate_pdf_page(page)
        else:
            with Image.open(path) as im:
                im.load()
                w, h, kind = *im.size, "image"
                est = estimate_image(im)
        res = {"category": r["category"], "truth": r.get("ds_tokens"), "est": est.tokens}
        for name, family in (("ocr2", OCR2), ("v1", V1)):
            choice = choose_mode(est, w, h, max_compression=target, family=family)
            res[f"{name}_mode"] = str(choice.mode)
            res[f"{name}_auto"] = choice.vision_tokens
            res[f"{name}_full"] = fixed_mode_tokens(kind, w, h, Mode.GUNDAM, family=family)
        out.append(res)
    return out


def report(res: list[dict], target: float, markdown: bool) -> str:
    """Totals, over-target counts and a per-category breakdown."""
    lines: list[str] = []

    def row(cells: list[str]) -> None:
        lines.append(("| " + " | ".join(cells) + " |") if markdown else "  ".join(f"{c:>14}" for c in cells))

    def header(cells: list[str]) -> None:
        row(cells)
        if markdown:
            lines.append("|" + "---|" * len(cells))

    known = [r for r in res if r["truth"] is not None]
    lines.append(
        f"{len(res)} pages ({len(known)} with a token count), target {target:g}x, {platform.machine()}"
    )
    header(["model", "auto tokens", "always-full", "saving", "over target (auto)", "over target (full)"])
    for name, full_label in (("ocr2", "6 tiles"), ("v1", "Gundam")):
        auto = sum(r[f"{name}_auto"] for r in res)
        full = sum(r[f"{name}_full"] for r in res)
        over_auto = sum(r["truth"] / r[f"{name}_auto"] > target for r in known)
        over_full = sum(r["truth"] / r[f"{name}_full"] > target for r in known)
        row(
            [
                name,
                str(auto),
                f"{full} ({full_label})",
                f"{100 * (1 - auto / full):.1f}%",
                str(over_auto),
                str(over_full),
            ]
        )
    lines.append("")
    caps = Counter(r["ocr2_mode"] for r in res)
    lines.append(
        "OCR-2 caps chosen: " + ", ".join(f"{m} {caps[m]}" for m in (x.value for x in Mode) if caps[m])
    )
    lines.append("")
    header(["category", "pages", "ocr2 auto", "ocr2 6 tiles", "saving"])
    by: dict[str, list[dict]] = defaultdict(list)
    for r in res:
        by[r["category"]].append(r)
    for cat in sorted(by):
        auto = sum(r["ocr2_auto"] for r in by[cat])
        full = sum(r["ocr2_full"] for r in by[cat])
        row([cat, str(len(by[cat])), str(auto), str(full), f"{100 * (1 - auto / full):.0f}%"])
    return "\n".join(lines)


def main() -> None:
    """Parse arguments, run, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--target", type=float, default=10.0, help="--max-compression")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    print(report(run(args.corpus, args.target), args.target, args.markdown))


if __name__ == "__main__":
    main()
