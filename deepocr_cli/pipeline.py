"""The conversion pipeline: discover, render and plan (background thread), infer in batches, parse, write.

Only this module knows the order of the stages. Failures are data until the end: a bad file or
page is recorded, the batch goes on, and the run report's exit code sums it up.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepocr_cli import prompts, rates
from deepocr_cli.discover import SkippedInput, SourceDoc, find_documents
from deepocr_cli.errors import ExitCode, InputError, NoInputError, OutputError, UsageError
from deepocr_cli.modes import Mode
from deepocr_cli.options import AUTO, ConvertOptions
from deepocr_cli.parse import Block, parse_grounded, strip_markup
from deepocr_cli.render import DocumentReader, open_document, parse_page_ranges
from deepocr_cli.results import DocResult, PageError, PageResult
from deepocr_cli.state import DocumentLock, PartialPages, is_up_to_date, partial_path, sha256_file, state_key
from deepocr_cli.write import OutputPaths, output_paths, render_markdown, save_page_crops, write_document

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- reports


@dataclass
class FileReport:
    """Outcome of one input: converted, partial (some pages failed or truncated), skipped, busy or failed."""

    source: str
    status: str
    reason: str | None = None
    outputs: list[str] = field(default_factory=list)
    pages: int = 0
    truncated_pages: int = 0
    failed_pages: int = 0
    vision_tokens: int = 0
    generated_tokens: int = 0
    output_error: bool = False

    def to_json(self) -> dict:
        """Stable JSON form (documented in README)."""
        d = dict(self.__dict__)
        d.pop("output_error")
        return d


@dataclass
class RunReport:
    """Summary of a run; `exit_code` follows the documented table."""

    files: list[FileReport] = field(default_factory=list)
    wall_s: float = 0.0
    markdown: dict[str, str] = field(default_factory=dict)  # source -> Markdown, only with stdout=True

    def count(self, status: str) -> int:
        """Number of files with the given status."""
        return sum(1 for f in self.files if f.status == status)

    @property
    def pages(self) -> int:
        """Pages converted in this run."""
        return sum(f.pages for f in self.files)

    @property
    def exit_code(self) -> ExitCode:
        """0 all done/up to date, 3 partial, 5 when every failure was an unwritable output."""
        bad = [f for f in self.files if f.status in ("failed", "partial")]
        if not bad:
            return ExitCode.OK
        if all(f.output_error for f in bad) and not any(f.status == "converted" for f in self.files):
            return ExitCode.OUTPUT
        return ExitCode.PARTIAL

    def to_json(self) -> dict:
        """Machine-readable run report (`convert --json`)."""
        totals = {
            "files": len(self.files),
            **{s: self.count(s) for s in ("converted", "partial", "skipped", "busy", "failed")},
            "pages": self.pages,
            "vision_tokens": sum(f.vision_tokens for f in self.files),
            "generated_tokens": sum(f.generated_tokens for f in self.files),
            "wall_s": round(self.wall_s, 3),
            "pages_per_s": round(self.pages / self.wall_s, 4) if self.wall_s > 0 else 0.0,
        }
        return {"exit_code": int(self.exit_code), "totals": totals, "files": [f.to_json() for f in self.files]}


class Reporter:
    """Progress sink; the CLI subclasses it (rich bars on a TTY, log lines otherwise). All calls come
    from the calling thread."""

    def run_started(self, files: int) -> None:
        """Discovery found this many inputs (supported documents plus skipped paths)."""

    def doc_started(self, source: str, pages: int) -> None:
        """A document is being converted."""

    def page_done(self, source: str, page: PageResult) -> None:
        """A page finished (with or without error)."""

    def doc_done(self, report: FileReport) -> None:
        """A document finished, was skipped or failed."""


# --------------------------------------------------------------------------- internal work items


@dataclass
class _Doc:
    src: SourceDoc
    paths: OutputPaths
    sha256: str
    key: str
    lock: DocumentLock | None = None
    partial: PartialPages | None = None
    result: DocResult | None = None
    wanted: list[int] = field(default_factory=list)
    done: dict[int, PageResult] = field(default_factory=dict)
    all_submitted: bool = False


@dataclass
class _Page:
    doc: _Doc
    page: PageResult
    image: Any  # PIL image of the rendered page; dropped once the page is written
    choice: Any = None  # autoplan.ModeChoice in auto mode
    attempts: list[dict] = field(default_factory=list)
    figures_pending: int = 0
    first: tuple | None = None  # (result, mode, grid) of attempt 0 while an escalated attempt runs


@dataclass
class _Request:
    kind: str  # "page" | "figure"
    work: _Page
    prepared: Any
    block: Block | None = None


_DONE = object()


# --------------------------------------------------------------------------- public entry


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
        _skip_input(report, reporter, s)
    if not docs:
        raise NoInputError(
            "no supported input found (PDF, PNG, JPEG, TIFF, WebP, BMP)"
            + (f"; {len(skipped)} path(s) skipped" if skipped else "")
        )
    if options.stdout and len(docs) != 1:
        raise UsageError("--stdout takes exactly one input document")
    if options.output_dir is not None:
        try:
            options.output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create output directory {options.output_dir}: {e.strerror or e}") from e

    model_info = {"id": options.model, "revision": options.revision}
    settings = options.output_settings()
    todo: list[_Doc] = []
    for src, paths_ in zip(docs, _assign_outputs(docs, options.output_dir), strict=True):
        try:
            sha = sha256_file(src.path)
        except OSError as e:
            _file_failed(report, reporter, src, f"unreadable: {e.strerror or e}")
            continue
        doc = _Doc(src, paths_, sha, state_key(sha, model_info, settings))
        if not options.force and not options.stdout and is_up_to_date(paths_.json, doc.key):
            fr = FileReport(str(src.path), "skipped", "up to date")
            report.files.append(fr)
            reporter.doc_done(fr)
            continue
        todo.append(doc)

    if todo:
        engine = engine_factory() if engine_factory else _load_engine(options)
        _Runner(engine, options, reporter, report, model_info, settings).run(todo)
    report.wall_s = time.perf_counter() - start
    return report


def _assign_outputs(docs: Sequence[SourceDoc], output_dir: Path | None) -> list[OutputPaths]:
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


def render_molecule_images(page: PageResult, paths: OutputPaths) -> list[Path]:
    """Draw every valid molecule of a page beside its figure crop (`--render-molecules`)."""
    from deepocr_cli.figures import render_molecule_png

    written = []
    for block in page.blocks:
        fig = block.figure
        mol = getattr(fig, "molecule", None) if getattr(fig, "kind", "") == "molecule" else None
        if mol and mol.get("valid"):
            path = paths.images_dir / f"p{page.index + 1:03d}_{block.index:02d}_molecule.png"
            if render_molecule_png(mol["smiles"], path):
                written.append(path)
    return written


def _load_engine(options: ConvertOptions) -> Any:
    from deepocr_cli.model import load_engine

    # DEEPOCR_MEMORY_BUDGET (bytes) caps the memory one batch may plan for, e.g. on a shared GPU.
    budget = os.environ.get("DEEPOCR_MEMORY_BUDGET")
    return load_engine(options.model, revision=options.revision, device=options.device, dtype=options.dtype,
                       memory_budget_bytes=int(budget) if budget else None)


def _skip_input(report: RunReport, reporter: Reporter, s: SkippedInput) -> None:
    fr = FileReport(str(s.path), "failed", s.reason)
    report.files.append(fr)
    reporter.doc_done(fr)


def _file_failed(report: RunReport, reporter: Reporter, src: SourceDoc, reason: str, output: bool = False) -> None:
    fr = FileReport(str(src.path), "failed", reason, output_error=output)
    report.files.append(fr)
    reporter.doc_done(fr)


# --------------------------------------------------------------------------- the runner


class _Runner:
    """Owns one run: a producer thread renders and plans pages; this thread batches them through the model."""

    def __init__(self, engine: Any, options: ConvertOptions, reporter: Reporter, report: RunReport,
                 model_info: dict, settings: dict) -> None:
        self.engine = engine
        self.opt = options
        self.reporter = reporter
        self.report = report
        self.model_info = {**model_info, "dtype": str(getattr(engine, "dtype", "")).replace("torch.", ""),
                           "device": str(getattr(engine, "device", ""))}
        self.settings = settings
        from deepocr_cli.families import V1

        #: geometry of the loaded model (modes are tile caps under DeepSeek-OCR-2)
        self.family = getattr(engine, "family", V1)
        self.batch_size = options.batch_size or engine.suggested_batch_size(options.max_new_tokens)
        # One batch ahead plus a few pages: prepared Gundam pages are ~50 MB each in host memory.
        self.queue: queue.Queue = queue.Queue(maxsize=self.batch_size + 8)
        self.stop = threading.Event()
        self.internal: deque[_Request] = deque()
        self.producer_error: BaseException | None = None
        self.rate_samples: dict[str, list[float]] = {}  # mode -> [pages, generation seconds], saved at the end
        # Preprocessing (PIL resizes, tensor conversion) releases the GIL: a few workers keep a fast GPU fed.
        self.pool = ThreadPoolExecutor(max_workers=max(1, min(8, (os.cpu_count() or 2))),
                                       thread_name_prefix="deepocr-prep")
        from deepocr_cli.model import NGramConfig

        self.ngram = NGramConfig(size=options.ngram_size, window=options.ngram_window, enabled=options.ngram_size > 0)

    # ----- producer (background thread): lock, resume, render, estimate, preprocess

    def _put(self, item: object) -> None:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _produce(self, docs: list[_Doc]) -> None:
        try:
            for doc in docs:
                if self.stop.is_set():
                    return
                self._produce_doc(doc)
        except BaseException as e:  # surfaced in the main thread
            self.producer_error = e
        finally:
            self._put(_DONE)

    def _produce_doc(self, doc: _Doc) -> None:
        lock = DocumentLock(doc.src.path)
        try:
            got = lock.acquire()
        except OSError as e:
            self._put(("failed", doc, f"unreadable: {e.strerror or e}", False))
            return
        if not got:
            self._put(("busy", doc))
            return
        doc.lock = lock
        if not self.opt.force and not self.opt.stdout and is_up_to_date(doc.paths.json, doc.key):
            lock.release()  # finished by another run while we waited
            self._put(("uptodate", doc))
            return
        try:
            doc.paths.json.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            lock.release()
            self._put(("failed", doc, f"output not writable: {e.strerror or e}", True))
            return
        try:
            with open_document(doc.src) as reader:
                try:
                    wanted = (
                        parse_page_ranges(self.opt.pages, reader.page_count)
                        if self.opt.pages else list(range(reader.page_count))
                    )
                except ValueError as e:
                    raise InputError(str(e)) from e
                if not wanted:
                    raise InputError(f"--pages {self.opt.pages} selects no page of {reader.page_count}")
                doc.wanted = wanted
                doc.result = DocResult(
                    source=doc.src.path, source_rel=str(doc.src.rel), size=doc.src.path.stat().st_size,
                    sha256=doc.sha256, page_count=reader.page_count, model=self.model_info,
                    settings={**self.settings, "state_key": doc.key}, pages=[],
                )
                if not self.opt.stdout:
                    doc.partial = PartialPages(partial_path(doc.paths.json), doc.key)
                    resumed = {i: p for i, p in doc.partial.load().items() if i in wanted}
                    doc.partial.start(resumed.values())
                    doc.done.update(resumed)
                self._put(("doc", doc))
                for index in wanted:
                    if self.stop.is_set():
                        return
                    if index in doc.done:
                        continue
                    self._put(self._render_page(doc, reader, index))
        except InputError as e:
            self._put(("failed", doc, str(e), False))
            return
        except OSError as e:
            self._put(("failed", doc, f"unreadable: {e.strerror or e}", False))
            return
        self._put(("end", doc))

    def _render_page(self, doc: _Doc, reader: DocumentReader, index: int) -> object:
        """Render and plan one page here (MuPDF is single-threaded), then preprocess it in the pool.

        Returns a Future of the page's request, or an error record for a page that cannot be rendered.
        """
        t0 = time.perf_counter()
        opt = self.opt
        try:
            pw, ph = reader.page_size(index)
            choice = None
            est = None
            # An image file is its own render: decode it once, for the estimate and for the model.
            image = reader.render(index) if reader.kind != "pdf" else None
            if opt.mode == AUTO:
                from deepocr_cli.planning import plan_page

                est, choice = plan_page(reader, index, opt, image, family=self.family)
                mode = choice.mode
            else:
                mode = Mode(opt.mode)
            if reader.kind == "pdf":
                # Render once at the size of the mode an escalation could need, so a re-run needs no re-render.
                size_mode = self._escalation_target(mode) or mode
                image = reader.render(index, self.family.render_size(size_mode, pw, ph, opt.min_tiles, opt.max_tiles))
            t1 = time.perf_counter()
            w, h = image.size
            grid = self.family.grid_for(mode, w, h, opt.min_tiles, opt.max_tiles)
            page = PageResult(
                index=index, width=w, height=h, mode=mode.value, grid=grid,
                vision_tokens=self.family.vision_tokens(mode, grid), image_embeddings=self.family.image_embeddings(mode, grid),
            )
            page.timing["render"] = round(t1 - t0, 4)
            if est is not None:
                page.plan = {"estimate": est.to_json(), "choice": choice.to_json(), "target": opt.max_compression}
            work = _Page(doc, page, image, choice)
            return self.pool.submit(self._preprocess, work, mode)
        except InputError as e:
            return ("page_error", doc, index, PageError("render", str(e)))
        except Exception as e:  # noqa: BLE001 - a broken page must not stop the document
            log.debug("page %d of %s failed to render", index + 1, doc.src.path, exc_info=True)
            return ("page_error", doc, index, PageError("render", f"{type(e).__name__}: {e}"))

    def _preprocess(self, work: _Page, mode: Mode) -> object:
        """Pool worker: the page's request, or an error record if its image cannot be preprocessed."""
        try:
            return self._page_request(work, mode, attempt=0)
        except Exception as e:  # noqa: BLE001 - one bad page must not stop the document
            log.debug("page %d of %s failed to preprocess", work.page.index + 1, work.doc.src.path, exc_info=True)
            return ("page_error", work.doc, work.page.index, PageError("preprocess", f"{type(e).__name__}: {e}"))

    def _escalation_target(self, mode: Mode) -> Mode | None:
        if self.opt.mode != AUTO or not self.opt.escalate:
            return None
        from deepocr_cli.autoplan import next_mode

        return next_mode(mode, Mode(self.opt.max_mode))

    def _page_request(self, work: _Page, mode: Mode, attempt: int) -> _Request:
        t0 = time.perf_counter()
        prompt = prompts.MARKDOWN if self.opt.task == "markdown" else prompts.FREE_OCR
        prepared = self.engine.prepare(work.image, mode, prompt, self.opt.min_tiles, self.opt.max_tiles)
        work.page.timing["preprocess"] = round(work.page.timing.get("preprocess", 0) + time.perf_counter() - t0, 4)
        work.attempts.append({"attempt": attempt, "mode": mode.value})
        return _Request("page", work, prepared)

    # ----- consumer (this thread): batches through the model

    def run(self, docs: list[_Doc]) -> None:
        """Convert the documents; on interrupt, finished pages stay recorded and locks are released."""
        producer = threading.Thread(target=self._produce, args=(docs,), name="deepocr-render", daemon=True)
        producer.start()
        try:
            self._consume()
        finally:
            self.stop.set()
            producer.join(timeout=5)
            self.pool.shutdown(wait=False, cancel_futures=True)
            rates.record(self.model_info["id"], self.model_info["device"], self.rate_samples)
            for doc in docs:
                if doc.lock is not None:
                    doc.lock.release()
        if self.producer_error is not None:
            raise self.producer_error

    def _consume(self) -> None:
        producer_done = False
        while True:
            batch: list[_Request] = []
            while len(batch) < self.batch_size:
                if self.internal:
                    batch.append(self.internal.popleft())
                    continue
                if producer_done:
                    break
                try:
                    item = self.queue.get(timeout=None if not batch else 0.05)
                except queue.Empty:
                    break
                if isinstance(item, Future):
                    item = item.result()
                if item is _DONE:
                    producer_done = True
                elif isinstance(item, _Request):
                    batch.append(item)
                else:
                    self._on_event(item)
            if not batch:
                if producer_done and not self.internal:
                    return
                continue
            self._run_batch(batch)

    def _on_event(self, item: tuple) -> None:
        kind, doc = item[0], item[1]
        src = str(doc.src.path)
        if kind == "doc":
            self.reporter.doc_started(src, len(doc.wanted))
            for page in doc.done.values():
                self.reporter.page_done(src, page)
        elif kind == "page_error":
            _, _, index, err = item
            assert doc.result is not None
            page = PageResult(index=index, width=0, height=0, mode="", grid=(1, 1), vision_tokens=0,
                              image_embeddings=0, error=err)
            self._finish_page(_Page(doc, page, None))
        elif kind == "end":
            doc.all_submitted = True
            self._maybe_finish_doc(doc)
        elif kind in ("busy", "uptodate"):
            status, reason = ("busy", "being converted by another deepocr process") if kind == "busy" else (
                "skipped", "up to date")
            fr = FileReport(src, status, reason)
            self.report.files.append(fr)
            self.reporter.doc_done(fr)
        elif kind == "failed":
            _, _, reason, output = item
            if doc.lock is not None:
                doc.lock.release()
            _file_failed(self.report, self.reporter, doc.src, reason, output)

    def _run_batch(self, batch: list[_Request]) -> None:
        t0 = time.perf_counter()
        results = self.engine.generate(
            [r.prepared for r in batch], max_new_tokens=self.opt.max_new_tokens,
            batch_size=self.opt.batch_size, ngram=self.ngram,
        )
        share = (time.perf_counter() - t0) / len(batch)
        for req, res in zip(batch, results, strict=True):
            req.work.page.timing["generate"] = round(req.work.page.timing.get("generate", 0) + share, 4)
            if req.kind == "page":
                self._on_page_result(req, res)
            else:
                self._on_figure_result(req, res)

    def _on_page_result(self, req: _Request, res: Any) -> None:
        work, page, opt = req.work, req.work.page, self.opt
        attempt = work.attempts[-1]
        attempt.update(generated_tokens=res.generated_tokens, truncated=res.truncated,
                       actual_ratio=round(res.generated_tokens / self.family.vision_tokens(Mode(attempt["mode"]), req.prepared.image.grid), 3))
        if self._should_escalate(work, res):
            up = self._escalation_target(Mode(attempt["mode"]))
            assert up is not None
            work.first = (res, page.mode, page.grid)
            grid = self.family.grid_for(up, page.width, page.height, opt.min_tiles, opt.max_tiles)
            page.mode, page.grid = up.value, grid
            page.vision_tokens, page.image_embeddings = self.family.vision_tokens(up, grid), self.family.image_embeddings(up, grid)
            self.internal.append(self._page_request(work, up, attempt=1))
            return
        first, work.first = work.first, None
        if first is not None and first[0].truncated is False and res.truncated:
            # The escalated run looped where the first did not: keep the first attempt.
            res, mode, grid = first
            page.mode, page.grid = mode, grid
            page.vision_tokens, page.image_embeddings = self.family.vision_tokens(Mode(mode), grid), self.family.image_embeddings(Mode(mode), grid)
        page.raw_text, page.generated_tokens, page.truncated = res.text, res.generated_tokens, res.truncated
        if page.plan is not None:
            page.plan["attempts"] = work.attempts
            page.plan["kept_attempt"] = next(a["attempt"] for a in work.attempts if a["mode"] == page.mode)
            ratio = page.generated_tokens / page.vision_tokens if page.vision_tokens else 0.0
            page.plan["actual_ratio"] = round(ratio, 3)
            page.plan["at_risk"] = bool(ratio > opt.max_compression)
        try:
            if opt.task == "markdown":
                parsed = parse_grounded(res.text, page.width, page.height)
                page.blocks, page.warnings = parsed.blocks, list(parsed.warnings)
            else:
                page.blocks = [Block(index=0, label="text", boxes=[], boxes_px=[], content=strip_markup(res.text))]
        except Exception as e:  # noqa: BLE001 - the parser is tolerant; this guards against a bug losing a page
            page.error = PageError("parse", f"{type(e).__name__}: {e}")
        if page.truncated:
            page.warnings.append("truncated: the model stopped at --max-new-tokens without finishing the page")
        self._submit_figures(work)
        if work.figures_pending == 0:
            self._finish_page(work)

    def _should_escalate(self, work: _Page, res: Any) -> bool:
        if len(work.attempts) > 1 or self._escalation_target(Mode(work.attempts[-1]["mode"])) is None:
            return False
        from deepocr_cli.autoplan import needs_escalation

        ratio = work.attempts[-1]["actual_ratio"]
        return needs_escalation(res.truncated, ratio, self.opt.max_compression)

    def _submit_figures(self, work: _Page) -> None:
        if not (self.opt.deep and self.opt.task == "markdown" and work.image is not None):
            return
        from deepocr_cli.figures import crop_for_figure, figure_mode

        figures = [b for b in work.page.blocks if b.label == "image" and b.boxes_px][: self.opt.deep_max_per_page]
        for block in figures:
            try:
                crop = crop_for_figure(work.image, block.boxes_px[0])
                mode = figure_mode(*crop.size)
                prepared = self.engine.prepare(crop, mode, prompts.PARSE_FIGURE, self.opt.min_tiles, self.opt.max_tiles)
            except Exception as e:  # noqa: BLE001 - a bad crop loses only its description
                work.page.warnings.append(f"figure {block.index}: not parsed ({type(e).__name__}: {e})")
                continue
            work.figures_pending += 1
            self.internal.append(_Request("figure", work, prepared, block))

    def _on_figure_result(self, req: _Request, res: Any) -> None:
        from deepocr_cli.figures import classify_figure_answer

        assert req.block is not None
        req.block.figure = classify_figure_answer(res.text, truncated=res.truncated)
        req.work.figures_pending -= 1
        if req.work.figures_pending == 0:
            self._finish_page(req.work)

    def _finish_page(self, work: _Page) -> None:
        doc, page = work.doc, work.page
        if work.image is not None and not self.opt.stdout:
            try:
                save_page_crops(page, work.image, doc.paths)
                if self.opt.render_molecules:
                    render_molecule_images(page, doc.paths)
            except OSError as e:
                page.warnings.append(f"figure crops not saved: {e.strerror or e}")
        work.image = None
        doc.done[page.index] = page
        if doc.partial is not None:
            try:
                doc.partial.append(page)
            except OSError as e:
                log.warning("cannot record progress of %s: %s", doc.src.path, e)
        self.reporter.page_done(str(doc.src.path), page)
        self._maybe_finish_doc(doc)

    def _maybe_finish_doc(self, doc: _Doc) -> None:
        if not doc.all_submitted or len(doc.done) < len(doc.wanted) or doc.result is None:
            return
        result = doc.result
        result.pages = [doc.done[i] for i in doc.wanted]
        failed = sum(1 for p in result.pages if p.error is not None)
        truncated = sum(1 for p in result.pages if p.truncated)
        result.status = "partial" if failed or truncated else "ok"
        if failed == len(result.pages):
            result.status = "failed"
        src = str(doc.src.path)
        fr = FileReport(
            src, {"ok": "converted"}.get(result.status, result.status),
            pages=len(result.pages), truncated_pages=truncated, failed_pages=failed,
            vision_tokens=sum(p.vision_tokens for p in result.pages),
            generated_tokens=sum(p.generated_tokens for p in result.pages),
        )
        if failed:
            fr.reason = f"{failed} page(s) failed: " + "; ".join(
                f"p{p.index + 1}: {p.error.message}" for p in result.pages if p.error)[:500]
        elif truncated:
            fr.reason = f"{truncated} page(s) truncated (no end of sequence within --max-new-tokens)"
        try:
            if self.opt.stdout:
                self.report.markdown[src] = render_markdown(result)
            else:
                fr.outputs = [str(p) for p in write_document(result, doc.paths, self.opt.formats)]
                if doc.partial is not None:
                    doc.partial.remove()
        except OSError as e:
            fr.status, fr.reason, fr.output_error = "failed", f"output not writable: {e.strerror or e}", True
        if doc.lock is not None:
            doc.lock.release()
            doc.lock = None
        rates.add_pages(self.rate_samples, result.pages)
        self.report.files.append(fr)
        self.reporter.doc_done(fr)


__all__ = ["FileReport", "Reporter", "RunReport", "convert"]
