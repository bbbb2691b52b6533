"""`deepocr plan`: the auto-mode decision for every page, with totals against each fixed mode. No model."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image

from deepocr_cli.boundary import is_run_level, reason
from deepocr_cli.errors import NoInputError
from deepocr_cli.inputs.discover import find_documents
from deepocr_cli.inputs.render import DocumentReader, open_document, parse_page_ranges
from deepocr_cli.options import ConvertOptions
from deepocr_cli.planning.autoplan import ModeChoice, choose_mode
from deepocr_cli.planning.estimate import TextEstimate, estimate_image, estimate_pdf_page
from deepocr_cli.planning.families import V1, ModelFamily, family_of
from deepocr_cli.planning.modes import MODE_ORDER, Mode

log = logging.getLogger(__name__)


def plan_page(reader: DocumentReader, index: int, options: ConvertOptions,
              image: Image.Image | None = None, family: ModelFamily = V1) -> tuple[TextEstimate, ModeChoice]:
    """The auto-mode decision for one page; `convert --mode auto` and `plan` both use it, so plan predicts convert.

    Args:
        reader: the open document.
        index: 0-based page.
        options: max compression, mode bounds, tile bounds.
        image: the page already decoded (image files), to avoid decoding it twice.
        family: the model's geometry (DeepSeek-OCR-2: modes are tile caps).
    """
    if reader.kind == "pdf":
        est = estimate_pdf_page(reader.pdf_page(index))
    else:
        est = estimate_image(image if image is not None else reader.render(index))
    w, h = reader.page_size(index)
    choice = choose_mode(est, w, h, max_compression=options.max_compression, min_mode=Mode(options.min_mode),
                         max_mode=Mode(options.max_mode), min_tiles=options.min_tiles, max_tiles=options.max_tiles,
                         family=family)
    return est, choice


def page_is_blank(reader: DocumentReader, index: int) -> bool:
    """Whether scan preparation calls the page blank (convert then skips the model for it), read as convert reads
    it: a scanned PDF page from its own image (deepocr_cli.inputs.scanpage), another PDF page rendered."""
    from deepocr_cli.inputs.scanpage import scan_page_image
    from deepocr_cli.planning.estimate import _render_gray
    from deepocr_cli.planning.image_estimate import work_gray
    from deepocr_cli.planning.scan import analyse_scan
    from deepocr_cli.planning.textest import WORK_LONG_SIDE

    if reader.kind == "pdf":
        scanned = scan_page_image(reader, index, WORK_LONG_SIDE)
        gray = work_gray(scanned) if scanned is not None else _render_gray(reader.pdf_page(index))
    else:
        gray = work_gray(reader.render(index))
    return analyse_scan(gray, rotate=False, deskew=False).blank


def fixed_mode_tokens(kind: str, width: float, height: float, mode: Mode, min_tiles: int = 2,
                      max_tiles: int = 6, family: ModelFamily = V1) -> int:
    """Vision tokens a fixed mode gives a page, on the image convert would feed the model.

    Args:
        kind: "pdf" (size in points; rendered at the mode's size) or "image" (size in pixels; used as it is).
        width: page width.
        height: page height.
        mode: the fixed mode.
        min_tiles: Gundam tile bounds.
        max_tiles: Gundam tile bounds.
        family: the model's geometry.
    """
    if kind == "pdf":
        width, height = family.render_size(mode, width, height, min_tiles, max_tiles)
    return family.vision_tokens(mode, family.grid_for(mode, round(width), round(height), min_tiles, max_tiles))


#: Version of `plan --json` (fields documented in README, "deepocr plan --json").
PLAN_SCHEMA_VERSION = 1


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to the working folder when under it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def plan_documents(paths: Sequence[Path], options: ConvertOptions, model_key: str | None = None,
                   device: str | None = None) -> dict:
    """Estimate and plan every page; returns the JSON-ready plan (schema in README, `plan --json`).

    Args:
        paths: files and folders.
        options: auto-mode bounds, pages, discovery filters.
        model_key: the checkpoint's identity (`deepocr_cli.checkpoints.CheckpointIdentity.key`) whose measured
            speed gives the time estimate; None: no estimate.
        device: the device type convert would run on (cpu, cuda, mps); None: no estimate.
    """
    docs, skipped = find_documents(list(paths), recursive=options.recursive, include=options.include,
                                   exclude=options.exclude)
    if not docs:
        raise NoInputError("no supported input found (PDF, PNG, JPEG, TIFF, WebP, BMP)")
    files: list[dict] = [{"source": _shown(s.path), "root": None, "error": s.reason, "pages": []} for s in skipped]
    family = family_of(options.model)
    totals = {"pages": 0, "auto": 0, **{m.value: 0 for m in MODE_ORDER}, "estimate_ms": 0.0}
    for src in docs:
        entry: dict = {"source": str(src.rel), "root": _shown(src.root), "error": None, "pages": []}
        files.append(entry)
        try:
            with open_document(src, password=options.password, max_image_pixels=options.max_image_pixels) as reader:
                wanted = (parse_page_ranges(options.pages, reader.page_count) if options.pages
                          else range(reader.page_count))
                for i in wanted:
                    t0 = time.perf_counter()
                    est, choice = plan_page(reader, i, options, family=family)
                    blank = options.skip_blank and page_is_blank(reader, i)
                    ms = (time.perf_counter() - t0) * 1000
                    planned = choice.to_json()
                    if blank:  # convert skips it in every mode: no vision tokens
                        planned.update(mode="", grid=[1, 1], vision_tokens=0, predicted_ratio=0.0,
                                       reason="blank page: skips the model")
                    entry["pages"].append({"page": i + 1, "estimate": est.to_json(), **planned, "blank": blank,
                                           "estimate_ms": round(ms, 2)})
                    totals["pages"] += 1
                    totals["auto"] += planned["vision_tokens"]
                    totals["estimate_ms"] += ms
                    w, h = reader.page_size(i)
                    for m in MODE_ORDER if not blank else ():
                        totals[m.value] += fixed_mode_tokens(reader.kind, w, h, m, options.min_tiles,
                                                             options.max_tiles, family)
        except Exception as e:  # one document's failure is that document's (boundary.py)
            if is_run_level(e):
                raise
            entry["error"] = str(e) if isinstance(e, ValueError) else reason(e)
    totals["estimate_ms"] = round(totals["estimate_ms"], 1)
    modes = ("auto", *(m.value for m in MODE_ORDER))
    return {"schema_version": PLAN_SCHEMA_VERSION, "max_compression": options.max_compression,
            "model_family": family.name, "files": files,
            "vision_tokens": {k: totals[k] for k in modes}, "totals": totals,
            "estimated_seconds": _estimate_seconds(files, model_key, device)}


def _estimate_seconds(files: list[dict], model_key: str | None, device: str | None) -> dict | None:
    """Generation time per strategy: each page's estimated text tokens over the tokens per second this checkpoint
    reached in that mode on this device type in earlier runs. A mode never measured gets None; no measurement at
    all gives None (never a made-up figure)."""
    from deepocr_cli.planning import rates

    if model_key is None or device is None:
        return None
    per_mode = rates.tokens_per_second(model_key, device)
    if not per_mode:
        return None
    pages = [p for f in files for p in f["pages"]]

    def seconds(mode_of: Callable[[dict], str]) -> float | None:
        total = 0.0
        for p in pages:
            if p.get("blank"):  # skips the model
                continue
            rate = per_mode.get(mode_of(p))
            if rate is None:
                return None
            total += max(p["estimate"]["tokens"], 1.0) / rate
        return round(total, 1)

    out: dict = {"device": rates.device_type(device), "tokens_per_second": {k: round(v, 2) for k, v in per_mode.items()},
                 "auto": seconds(lambda p: p["mode"])}
    for m in MODE_ORDER:
        out[m.value] = seconds(lambda p, m=m: m.value)
    return out


def plan_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    """The per-page table of a plan: header and rows of short cells, the file last and never cut (the reasons
    stay in `--json`)."""
    header = ["page", "source", "est.tok", "mode", "vis.tok", "ratio", "file"]
    rows = []
    for f in result["files"]:
        if f["error"]:
            rows.append(["-", "error", "", "", "", "", f"{f['source']}: {f['error']}"])
        for p in f["pages"]:
            rows.append([str(p["page"]), p["estimate"]["source"], f"{p['estimate']['tokens']:.0f}",
                         "blank" if p.get("blank") else p["mode"],
                         str(p["vision_tokens"]), f"{p['predicted_ratio']:.1f}x", f["source"]])
    return header, rows


def totals_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    """The totals table: vision tokens (and estimated seconds, when measured) for auto and each fixed mode."""
    vt = result["vision_tokens"]
    header = ["", *vt]
    rows = [["vision tokens", *(str(v) for v in vt.values())]]
    est = result.get("estimated_seconds")
    if est:
        rows.append([f"est. s ({est['device']})", *("-" if est.get(k) is None else f"{est[k]:.0f}" for k in vt)])
    return header, rows


def plain_table(header: list[str], rows: list[list[str]]) -> str:
    """An aligned plain-text table (no box drawing): numbers right-aligned; a last text column (a file name) is
    left as it is, however long."""
    last = len(header) - 1
    right = {i for i in range(len(header)) if all(_numeric(r[i]) for r in rows if r[i] not in ("", "-"))}
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(widths[i]) if i in right else c if i == last else c.ljust(widths[i])
                         for i, c in enumerate(cells)).rstrip()

    return "\n".join([line(header), *(line(r) for r in rows)]) + "\n"


def _numeric(text: str) -> bool:
    return text.rstrip("x").replace(".", "", 1).isdigit()


#: Said when no time estimate can be made (two lines, to fit 80 columns).
NO_ESTIMATE = ("No time estimate: one appears once `deepocr convert` has measured this\n"
               "checkpoint on this device.")


def render_plan_text(result: dict) -> str:
    """The human form of `plan --json` as plain text: the per-page table, then the totals (one row per mode)."""
    title = f"auto plan (max compression {result['max_compression']}x)"
    if result.get("model_family", V1.name) != V1.name:
        title += "\nDeepSeek-OCR-2: modes are tile caps (tiny none, small/base/large 2/3/4, gundam max)"
    header, rows = totals_rows(result)
    # Transposed: one row per strategy keeps the totals narrow whatever the number of modes.
    totals = plain_table(["strategy", *(r[0] for r in rows)],
                         [[k, *(r[i + 1] for r in rows)] for i, k in enumerate(header[1:])])
    out = [title, plain_table(*plan_rows(result)), totals]
    if not result.get("estimated_seconds"):
        out.append(NO_ESTIMATE + "\n")
    return "\n".join(out)


def _family_note(result: dict) -> str:
    """Under DeepSeek-OCR-2 the mode columns are tile caps."""
    if result.get("model_family", V1.name) == V1.name:
        return ""
    return " (DeepSeek-OCR-2: tiny..gundam = tile cap 0/2/3/4/--max-tiles)"


def render_plan_table(result: dict) -> None:
    """Print the plan on a terminal as rich tables, folded to the terminal's width."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    family = result.get("model_family", V1.name)
    plan_title = f"auto plan for {family} (max compression {result['max_compression']}x)"
    for (header, rows), title in ((plan_rows(result), plan_title),
                                  (totals_rows(result), "totals: auto vs fixed modes" + _family_note(result))):
        table = Table(title=title)
        for col in header:
            table.add_column(col, justify="left" if col in ("", "file", "source", "mode") else "right",
                             overflow="fold")
        for r in rows:
            table.add_row(*r)
        console.print(table)
    if not result.get("estimated_seconds"):
        console.print(NO_ESTIMATE.replace("\n", " "))
