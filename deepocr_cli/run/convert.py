"""`convert()`: the library entry point. Finds the inputs, decides which are up to date, and runs the rest.

Failures are data until the end: a bad file or page is recorded, the batch goes on, and the run report's exit
code sums it up.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from deepocr_cli.errors import InputError, NoInputError, OutputError, UsageError
from deepocr_cli.inputs.discover import SourceDoc, find_documents
from deepocr_cli.options import ConvertOptions
from deepocr_cli.outputs.formats import write_document
from deepocr_cli.outputs.paths import OutputPaths, output_paths
from deepocr_cli.outputs.stored import load_stored
from deepocr_cli.run.jobs import Doc
from deepocr_cli.run.report import FileReport, Reporter, RunReport, file_failed
from deepocr_cli.run.runner import Runner
from deepocr_cli.run.state import sha256_file, stale_outputs, state_key

log = logging.getLogger(__name__)


def convert(
    paths: Sequence[Path],
    options: ConvertOptions,
    reporter: Reporter | None = None,
    engine_factory: Callable[[], Any] | None = None,
) -> RunReport:
    """Convert documents to Markdown/JSON next to them (or under options.output_dir).

    Raises NoInputError (no supported input), OutputError (output dir unusable), ModelError,
    OutOfResourcesError, KeyboardInterrupt; everything per file or page is recorded in the report.
    """
    start = time.perf_counter()
    reporter = reporter or Reporter()
    report = RunReport()
    docs, skipped = find_documents(
        list(paths), recursive=options.recursive, include=options.include, exclude=options.exclude
    )
    reporter.run_started(len(docs) + len(skipped))
    for s in skipped:
        file_failed(report, reporter, str(s.path), s.reason)
    if not docs:
        raise NoInputError(
            "no supported input found (PDF, PNG, JPEG, TIFF, WebP, BMP)"
            + (f"; {len(skipped)} path(s) skipped" if skipped else "")
        )
    if options.shard is not None:
        from deepocr_cli.scale.shard import shard_of

        docs = [d for d in docs if shard_of(d.rel, options.shard[1]) == options.shard[0]]
    if options.stdout and len(docs) != 1:
        raise UsageError("--stdout takes exactly one input document")
    if options.output_dir is not None:
        try:
            options.output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create output directory {options.output_dir}: {e.strerror or e}") from e

    model_info = {"id": options.model, "revision": options.revision}
    settings = options.output_settings()
    todo: list[Doc] = []
    for src, paths_ in zip(docs, assign_outputs(docs, options.output_dir), strict=True):
        try:
            sha = sha256_file(src.path)
        except OSError as e:
            file_failed(report, reporter, str(src.path), f"unreadable: {e.strerror or e}")
            continue
        doc = Doc(src, paths_, sha, state_key(sha, model_info, settings))
        stale = None if options.force or options.stdout else stale_outputs(paths_, doc.key, options.formats)
        if stale is not None and _refresh_outputs(doc, stale, report, reporter):
            continue
        todo.append(doc)

    if todo:
        engine = engine_factory() if engine_factory else _load_engine(options)
        if getattr(engine, "remote", False):  # several workers (--devices, --ray): deepocr_cli.scale
            from deepocr_cli.run.scaled import run_scaled

            run_scaled(engine, todo, options, reporter, report, model_info, settings, close=engine_factory is None)
        else:
            Runner(engine, options, reporter, report, model_info, settings).run(todo)
    report.wall_s = time.perf_counter() - start
    return report


def _refresh_outputs(doc: Doc, stale: list[str], report: RunReport, reporter: Reporter) -> bool:
    """Skip a document whose JSON is current, first rebuilding from that JSON (no model) any requested output
    that is missing or older than it. False when the stored JSON cannot be used: the document is converted."""
    reason = "up to date"
    outputs: list[str] = []
    if stale:
        try:
            written = write_document(load_stored(doc.paths.json, doc.src.path), doc.paths, stale)
        except OutputError as e:
            fr = FileReport(str(doc.src.path), "failed", str(e), output_error=True)
            report.files.append(fr)
            reporter.doc_done(fr)
            return True
        except (InputError, OSError, ValueError, KeyError, TypeError) as e:
            log.info("%s: cannot rebuild %s from the stored JSON (%s); converting again", doc.src.path, stale, e)
            return False
        outputs = [str(p) for p in written]
        reason = f"up to date; rebuilt {', '.join(stale)} from the stored JSON"
    fr = FileReport(str(doc.src.path), "skipped", reason, outputs=outputs)
    report.files.append(fr)
    reporter.doc_done(fr)
    return True


def assign_outputs(docs: Sequence[SourceDoc], output_dir: Path | None) -> list[OutputPaths]:
    """Output paths per document, never shared: `a.pdf` and `a.png` in one folder (or two input
    trees mirrored into one --output-dir) get `a.pdf.md` / `a.png.md`, then numbered stems."""

    def plain(src: SourceDoc, stem: str | None = None) -> OutputPaths:
        # The path as the user sees it (root/rel), not the symlink-resolved one.
        return output_paths(src.root / src.rel, src.root, output_dir, stem)

    out = [plain(d) for d in docs]
    counts: dict[Path, int] = {}
    for p in out:
        counts[p.json] = counts.get(p.json, 0) + 1
    out = [plain(d, d.rel.name) if counts[p.json] > 1 else p for d, p in zip(docs, out, strict=True)]
    seen: dict[Path, int] = {}
    for i, (d, p) in enumerate(zip(docs, out, strict=True)):
        n = seen.get(p.json, 0) + 1
        seen[p.json] = n
        if n > 1:
            out[i] = plain(d, f"{d.rel.name}-{n}")
    return out


def _load_engine(options: ConvertOptions) -> Any:
    if options.devices or options.ray:
        from deepocr_cli.scale.engine import open_engine

        return open_engine(options)
    from deepocr_cli.model import load_engine

    # DEEPOCR_MEMORY_BUDGET (bytes) caps the memory one batch may plan for, e.g. on a shared GPU.
    budget = os.environ.get("DEEPOCR_MEMORY_BUDGET")
    return load_engine(options.model, revision=options.revision, device=options.device, dtype=options.dtype,
                       memory_budget_bytes=int(budget) if budget else None)


__all__ = ["FileReport", "Reporter", "RunReport", "convert"]
