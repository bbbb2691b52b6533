"""`deepocr plan`: the auto-mode decision for every page, with totals against each fixed mode. No model."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from deepocr_cli.boundary import is_run_level, reason
from deepocr_cli.errors import NoInputError
from deepocr_cli.inputs.discover import find_documents
from deepocr_cli.inputs.render import DocumentReader, open_document, parse_page_ranges
from deepocr_cli.options import ConvertOptions
from deepocr_cli.planning.autoplan import ModeChoice, choose_mode
from deepocr_cli.planning.estimate import TextEstimate, estimate_image, estimate_pdf_page
from deepocr_cli.planning.modes import MODE_ORDER, Mode, grid_for, render_size, vision_tokens

log = logging.getLogger(__name__)


def plan_page(reader: DocumentReader, index: int, options: ConvertOptions,
              image: Image.Image | None = None) -> tuple[TextEstimate, ModeChoice]:
    """The auto-mode decision for one page; `convert --mode auto` and `plan` both use it, so plan predicts convert.

    Args:
        reader: the open document.
        index: 0-based page.
        options: max compression, mode bounds, tile bounds.
        image: the page already decoded (image files), to avoid decoding it twice.
    """
    if reader.kind == "pdf":
        est = estimate_pdf_page(reader.pdf_page(index))
    else:
        est = estimate_image(image if image is not None else reader.render(index))
    w, h = reader.page_size(index)
    choice = choose_mode(est, w, h, max_compression=options.max_compression, min_mode=Mode(options.min_mode),
                         max_mode=Mode(options.max_mode), min_tiles=options.min_tiles, max_tiles=options.max_tiles)
    return est, choice


def fixed_mode_tokens(kind: str, width: float, height: float, mode: Mode, min_tiles: int = 2,
                      max_tiles: int = 6) -> int:
    """Vision tokens a fixed mode gives a page, on the image convert would feed the model.

    Args:
        kind: "pdf" (size in points; rendered at the mode's size) or "image" (size in pixels; used as it is).
        width: page width.
        height: page height.
        mode: the fixed mode.
        min_tiles: Gundam tile bounds.
        max_tiles: Gundam tile bounds.
    """
    if kind == "pdf":
        width, height = render_size(mode, width, height, min_tiles, max_tiles)
    return vision_tokens(mode, grid_for(mode, round(width), round(height), min_tiles, max_tiles))


def plan_documents(paths: Sequence[Path], options: ConvertOptions) -> dict:
    """Estimate and plan every page; returns the JSON-ready plan (schema in README)."""
    docs, skipped = find_documents(list(paths), recursive=options.recursive, include=options.include,
                                   exclude=options.exclude)
    if not docs:
        raise NoInputError("no supported input found (PDF, PNG, JPEG, TIFF, WebP, BMP)")
    files: list[dict] = [{"source": str(s.path), "error": s.reason, "pages": []} for s in skipped]
    totals = {"pages": 0, "auto": 0, **{m.value: 0 for m in MODE_ORDER}, "estimate_ms": 0.0}
    for src in docs:
        entry: dict = {"source": str(src.path), "error": None, "pages": []}
        files.append(entry)
        try:
            with open_document(src, max_image_pixels=options.max_image_pixels) as reader:
                wanted = (parse_page_ranges(options.pages, reader.page_count) if options.pages
                          else range(reader.page_count))
                for i in wanted:
                    t0 = time.perf_counter()
                    est, choice = plan_page(reader, i, options)
                    ms = (time.perf_counter() - t0) * 1000
                    entry["pages"].append({"page": i + 1, "estimate": est.to_json(), **choice.to_json(),
                                           "estimate_ms": round(ms, 2)})
                    totals["pages"] += 1
                    totals["auto"] += choice.vision_tokens
                    totals["estimate_ms"] += ms
                    w, h = reader.page_size(i)
                    for m in MODE_ORDER:
                        totals[m.value] += fixed_mode_tokens(reader.kind, w, h, m, options.min_tiles,
                                                             options.max_tiles)
        except Exception as e:  # one document's failure is that document's (boundary.py)
            if is_run_level(e):
                raise
            entry["error"] = str(e) if isinstance(e, ValueError) else reason(e)
    totals["estimate_ms"] = round(totals["estimate_ms"], 1)
    modes = ("auto", *(m.value for m in MODE_ORDER))
    return {"max_compression": options.max_compression, "files": files,
            "vision_tokens": {k: totals[k] for k in modes}, "totals": totals,
            "estimated_seconds": _estimate_seconds(files, options.model)}


def _estimate_seconds(files: list[dict], model: str) -> dict | None:
    """Generation time per strategy from rates measured by earlier runs of this model, if any."""
    from deepocr_cli.planning import rates

    measured = rates.seconds_per_page(model)
    if measured is None:
        return None
    device, per_page = measured
    pages = [p for f in files for p in f["pages"]]
    out: dict = {"device": device, "model": model}
    auto = [per_page.get(p["mode"]) for p in pages]
    out["auto"] = round(sum(auto), 1) if all(v is not None for v in auto) else None
    for m in MODE_ORDER:
        out[m.value] = round(per_page[m.value] * len(pages), 1) if m.value in per_page else None
    return out


def render_plan_table(result: dict) -> None:
    """Print the plan as rich tables on stderr-free stdout (human form of `plan --json`)."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"auto plan (max compression {result['max_compression']}x)")
    for col in ("file", "page", "source", "est. tokens", "mode", "vision tokens", "pred. ratio", "reason"):
        table.add_column(col, justify="right" if col in ("page", "est. tokens", "vision tokens", "pred. ratio") else "left")
    for f in result["files"]:
        if f["error"]:
            table.add_row(f["source"], "-", "-", "-", "-", "-", "-", f"[red]{f['error']}[/red]")
        for p in f["pages"]:
            table.add_row(Path(f["source"]).name, str(p["page"]), p["estimate"]["source"],
                          f"{p['estimate']['tokens']:.0f}", p["mode"], str(p["vision_tokens"]),
                          f"{p['predicted_ratio']:.1f}x", p.get("reason", ""))
    console.print(table)
    vt = result["vision_tokens"]
    totals = Table(title="totals: auto vs fixed modes")
    totals.add_column("")
    for k in vt:
        totals.add_column(k, justify="right")
    totals.add_row("vision tokens", *(str(v) for v in vt.values()))
    est = result.get("estimated_seconds")
    if est:
        totals.add_row(f"est. seconds ({est['device']})", *(
            "-" if est.get(k) is None else f"{est[k]:.0f}" for k in vt))
    console.print(totals)
    if not est:
        console.print("No time estimate yet: it appears once `deepocr convert` has measured this model's speed.")
