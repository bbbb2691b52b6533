"""`convert()`: the library entry point. Finds the inputs, decides which are up to date, and runs the rest.

Failures are data until the end: a bad file or page is recorded, the batch goes on, and the run report's exit
code sums it up.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from deepocr_cli.boundary import enter, is_run_level
from deepocr_cli.boundary import reason as reason_for
from deepocr_cli.checkpoints import checkpoint_identity
from deepocr_cli.errors import NoInputError, OutputError, UsageError
from deepocr_cli.inputs.discover import SourceDoc, find_documents
from deepocr_cli.options import ConvertOptions
from deepocr_cli.outputs.paths import OutputPaths, output_paths, path_hash
from deepocr_cli.run.finish import truncation_note
from deepocr_cli.run.jobs import Doc
from deepocr_cli.run.report import FileReport, Reporter, RunReport, file_failed
from deepocr_cli.run.restore import restore_outputs
from deepocr_cli.run.runner import Runner
from deepocr_cli.run.state import Verdict, decide, is_busy, sha256_file, state_key

log = logging.getLogger(__name__)

#: An output folder with less free space than this counts as full: the run stops before loading the model.
MIN_FREE_BYTES = 1 << 20


def discover(paths: Sequence[Path], options: ConvertOptions, report: RunReport, reporter: Reporter) -> list[SourceDoc]:
    """The documents among ``paths``; paths that are not documents are reported failed with their reason.

    Raises:
        NoInputError: no supported document was found.
    """
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
    return docs


def convert(
    paths: Sequence[Path],
    options: ConvertOptions,
    reporter: Reporter | None = None,
    engine_factory: Callable[[], Any] | None = None,
    report: RunReport | None = None,
) -> RunReport:
    """Convert documents to Markdown/JSON next to them (or under options.output_dir).

    Everything that can fail for the whole run fails before the model loads: no input, an unusable output
    location, an unknown checkpoint. The model loads only when some document needs it: documents that are up
    to date, busy (another run holds them) or only missing an output their JSON can restore never load it.

    Args:
        paths: files and folders.
        options: the run's settings.
        reporter: progress sink.
        engine_factory: builds the engine instead of loading ``options.model`` (tests, embedding).
        report: the report to fill (the CLI passes one so that an interrupted run still reports what it did).

    Raises:
        NoInputError (no supported input), OutputError (output location unusable), ModelError,
        OutOfResourcesError, KeyboardInterrupt; everything per file or page is recorded in the report.
    """
    start = time.perf_counter()
    reporter = reporter or Reporter()
    report = report if report is not None else RunReport()
    if options.ray and engine_factory is None:
        from deepocr_cli.scale.ray_backend import import_ray

        import_ray()  # a missing extra is a usage error (exit 2) before anything else
    docs = discover(paths, options, report, reporter)
    if options.shard is not None:
        from deepocr_cli.scale.shard import shard_of

        docs = [d for d in docs if shard_of(d.rel, options.shard[1]) == options.shard[0]]
    if options.stdout and len(docs) != 1:
        raise UsageError("--stdout takes exactly one input document")
    if options.output_dir is not None:
        try:
            options.output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"output not writable: {options.output_dir}: {e.strerror or e}") from e

    identity = checkpoint_identity(options.model, options.revision)
    model_info = {**identity.to_json(), "revision": options.revision}
    settings = options.output_settings()
    todo: list[Doc] = []
    restores: list[tuple[Doc, Verdict]] = []
    for src, paths_ in zip(docs, assign_outputs(docs, options.output_dir), strict=True):
        try:  # the document's boundary (boundary.py): reading it for its hash
            enter("hash", src.path)
            sha = sha256_file(src.path)
        except Exception as e:
            if is_run_level(e):
                raise
            file_failed(report, reporter, str(src.path), f"unreadable: {reason_for(e)}")
            continue
        doc = Doc(src, paths_, sha, state_key(sha, {"fingerprint": identity.key}, options.key_settings()))
        if options.force or options.stdout:
            todo.append(doc)
            continue
        verdict = decide(paths_, doc.key, options.formats, options.retry_truncated, options.max_new_tokens)
        if verdict.action == "current":
            _report(report, reporter, _current_report(doc, verdict))
        elif verdict.action == "rewrite":
            restores.append((doc, verdict))
        else:
            log.debug("%s: %s", src.path, verdict.reason)
            todo.append(doc)

    if not options.stdout:
        todo, restores = _writable(todo, restores, report, reporter)
    todo = _not_busy(todo, report, reporter)
    for doc, verdict in restores:
        _report(report, reporter, restore_outputs(doc, verdict, options.password))
    if todo:
        engine = engine_factory() if engine_factory else _load_engine(options)
        if getattr(engine, "remote", False):  # several workers (--devices, --ray): deepocr_cli.scale
            from deepocr_cli.run.scaled import run_scaled

            run_scaled(engine, todo, options, reporter, report, model_info, settings, close=engine_factory is None)
        else:
            Runner(engine, options, reporter, report, model_info, settings).run(todo)
    report.wall_s = time.perf_counter() - start
    return report


def _report(report: RunReport, reporter: Reporter, fr: FileReport) -> None:
    report.files.append(fr)
    reporter.doc_done(fr)


def _current_report(doc: Doc, verdict: Verdict) -> FileReport:
    """An up-to-date document: skipped, or partial when it keeps truncated pages (a rerun does not hide them)."""
    src = str(doc.src.path)
    truncated = (verdict.record or {}).get("truncated") or []
    if not truncated:
        return FileReport(src, "skipped", "up to date")
    return FileReport(src, "partial", "up to date, " + truncation_note(truncated, truncated),
                      truncated_pages=len(truncated), truncated_kept=len(truncated))


def _probe(folder: Path) -> str | None:
    """Why ``folder`` cannot take outputs (None when it can): created if needed, one small file written and
    removed, and some free space left."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".deepocr-probe-", dir=folder)
        try:
            os.write(fd, b"deepocr")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(tmp)
        st = os.statvfs(folder)
        if st.f_bavail * st.f_frsize < MIN_FREE_BYTES:
            return "no space left on device"
    except OSError as e:
        return e.strerror or str(e)
    return None


def _writable(todo: list[Doc], restores: list[tuple[Doc, Verdict]], report: RunReport,
              reporter: Reporter) -> tuple[list[Doc], list[tuple[Doc, Verdict]]]:
    """Drop the documents whose output folder cannot be written, before any model loads.

    Raises:
        OutputError: no document's output folder can be written (one line naming the folder).
    """
    verdicts: dict[Path, str | None] = {}
    bad: list[tuple[Doc, Path]] = []

    def ok(doc: Doc) -> bool:
        folder = doc.paths.json.parent
        if folder not in verdicts:
            verdicts[folder] = _probe(folder)
        if verdicts[folder] is not None:
            bad.append((doc, folder))
        return verdicts[folder] is None

    todo = [d for d in todo if ok(d)]
    restores = [(d, v) for d, v in restores if ok(d)]
    if bad and not todo and not restores:
        folders = sorted({f for _, f in bad}, key=str)
        more = f" (and {len(folders) - 1} more folder(s))" if len(folders) > 1 else ""
        raise OutputError(f"output not writable: {folders[0]}: {verdicts[folders[0]]}{more}")
    for doc, folder in bad:
        file_failed(report, reporter, str(doc.src.path), f"output not writable: {folder}: {verdicts[folder]}", True)
    return todo, restores


def _not_busy(todo: list[Doc], report: RunReport, reporter: Reporter) -> list[Doc]:
    """Report documents another run is converting now, so that a run of only busy documents loads no model."""
    free = []
    for doc in todo:
        if is_busy(doc.src.path):
            _report(report, reporter, FileReport(str(doc.src.path), "busy", "being converted by another deepocr process"))
        else:
            free.append(doc)
    return free


def assign_outputs(docs: Sequence[SourceDoc], output_dir: Path | None) -> list[OutputPaths]:
    """Output paths per document, never shared, and independent of the order of the arguments.

    1. ``NAME.EXT`` gets ``NAME.md``/``NAME.json``/``NAME_images`` beside it, or at its path relative to its
       input root under --output-dir.
    2. Sources of this run that would share those outputs (``x.pdf`` and ``x.png`` in one folder) each use their
       full name: ``x.pdf.json``, ``x.png.json``.
    3. Sources that still share them (``a/x.pdf`` and ``b/x.pdf`` given as files with one --output-dir) each
       add ``~`` and 8 hex digits of their absolute path's SHA-256: ``x.pdf~1a2b3c4d.json``.
    """

    def plain(src: SourceDoc, stem: str | None = None) -> OutputPaths:
        # The path as the user sees it (root/rel), not the symlink-resolved one.
        return output_paths(src.root / src.rel, src.root, output_dir, stem)

    def clashes(out: list[OutputPaths]) -> set[Path]:
        counts: dict[Path, int] = {}
        for p in out:
            counts[p.json] = counts.get(p.json, 0) + 1
        return {j for j, n in counts.items() if n > 1}

    out = [plain(d) for d in docs]
    shared = clashes(out)
    out = [plain(d, d.rel.name) if p.json in shared else p for d, p in zip(docs, out, strict=True)]
    shared = clashes(out)
    return [plain(d, f"{d.rel.name}~{path_hash(d.root / d.rel)}") if p.json in shared else p
            for d, p in zip(docs, out, strict=True)]


def _load_engine(options: ConvertOptions) -> Any:
    if options.devices or options.ray:
        from deepocr_cli.scale.engine import open_engine

        return open_engine(options)
    from deepocr_cli.engine import load_engine

    # DEEPOCR_MEMORY_BUDGET (bytes) caps the KV cache the engine may use, e.g. on a shared GPU.
    budget = os.environ.get("DEEPOCR_MEMORY_BUDGET")
    return load_engine(options.model, revision=options.revision, device=options.device, dtype=options.dtype,
                       memory_budget_bytes=int(budget) if budget else None, cuda_graphs=options.cuda_graphs)


__all__ = ["FileReport", "Reporter", "RunReport", "convert"]
