"""Stage 1 of a run, on a background thread: lock each document, resume its finished pages, render and plan
each remaining page, and preprocess it for the model (in a thread pool), ahead of the model.

Everything goes to the run's queue in document order: ``("doc", doc)`` when a document starts, a Future of
each page's `Request` (or a ``("page_error", ...)`` record), ``("end", doc)``, and ``("busy" | "uptodate" |
"failed", doc, ...)`` for documents that are not converted; `DONE` last.
"""

from __future__ import annotations

import logging
import os
import queue
import time
from concurrent.futures import ThreadPoolExecutor

from deepocr_cli import prompts
from deepocr_cli.boundary import enter, is_run_level, reason
from deepocr_cli.errors import InputError
from deepocr_cli.inputs.render import DocumentReader, open_document, parse_page_ranges
from deepocr_cli.options import AUTO
from deepocr_cli.outputs.paths import source_path_for
from deepocr_cli.outputs.results import DocResult, PageError, PageResult
from deepocr_cli.planning.modes import Mode
from deepocr_cli.planning.upright import prepare_page
from deepocr_cli.run.jobs import DONE, Doc, Page, Request, RunContext
from deepocr_cli.run.scanprep import blank_page, scan_page
from deepocr_cli.run.state import DocumentLock, PartialPages, decide, kept_pages, partial_path

log = logging.getLogger(__name__)


def escalation_target(ctx: RunContext, mode: Mode) -> Mode | None:
    """The mode a page of ``mode`` is re-run in when its output says the budget was too small (auto only)."""
    if ctx.options.mode != AUTO or not ctx.options.escalate:
        return None
    from deepocr_cli.planning.autoplan import next_mode

    return next_mode(mode, Mode(ctx.options.max_mode))


def ngram_window(ctx: RunContext, image_input: bool) -> int:
    """The no-repeat window of one request: the model family's own for images (OCR-2 runs its image runner's 90),
    else --ngram-window (PDF pages: the PDF runners' 50)."""
    own = ctx.family.image_ngram_window if image_input else None
    return own if own is not None else ctx.options.ngram_window


def page_request(ctx: RunContext, work: Page, mode: Mode, attempt: int) -> Request:
    """Preprocess a page's image for ``mode`` (tiles, tensors) and record the attempt."""
    t0 = time.perf_counter()
    opt = ctx.options
    prompt = prompts.MARKDOWN if opt.task == "markdown" else prompts.FREE_OCR
    enter("preprocess", work.doc.src.path)
    prepared = ctx.engine.prepare(work.image, mode, prompt, opt.min_tiles, opt.max_tiles)
    prepared.ngram_window = ngram_window(ctx, image_input=work.doc.src.kind != "pdf")
    work.page.timing["preprocess"] = round(work.page.timing.get("preprocess", 0) + time.perf_counter() - t0, 4)
    work.attempts.append({"attempt": attempt, "mode": mode.value})
    return Request("page", work, prepared)


class Producer:
    """Feeds the run's queue from a list of documents; `run` is the thread's body."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.error: BaseException | None = None
        # Preprocessing (PIL resizes, tensor conversion) releases the GIL: a few workers keep a fast GPU fed.
        self.pool = ThreadPoolExecutor(max_workers=max(1, min(8, (os.cpu_count() or 2))),
                                       thread_name_prefix="deepocr-prep")

    def put(self, item: object) -> None:
        """Queue an item, giving up when the run stops (the consumer may be gone)."""
        while not self.ctx.stop.is_set():
            try:
                self.ctx.queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def run(self, docs: list[Doc]) -> None:
        """Produce every document's pages; an error is kept for the consumer to raise."""
        try:
            for doc in docs:
                if self.ctx.stop.is_set():
                    return
                self._produce_doc(doc)
        except BaseException as e:  # surfaced in the main thread
            self.error = e
        finally:
            self.put(DONE)

    def shutdown(self) -> None:
        """Drop preprocessing not yet started."""
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _produce_doc(self, doc: Doc) -> None:
        opt = self.ctx.options
        lock = DocumentLock(doc.src.path)
        try:
            got = lock.acquire()
        except OSError as e:
            self.put(("failed", doc, f"unreadable: {e.strerror or e}", False))
            return
        if not got:
            self.put(("busy", doc))
            return
        doc.lock = lock
        if not opt.force and not opt.stdout and (
                decide(doc.paths, doc.key, opt.formats, opt.retry_truncated, opt.max_new_tokens).action != "convert"):
            lock.release()  # finished by another run while we waited
            self.put(("uptodate", doc))
            return
        try:
            doc.paths.json.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            lock.release()
            self.put(("failed", doc, f"output not writable: {e.strerror or e}", True))
            return
        # The document's boundary (boundary.py): whatever opening, counting or resuming it raises is this
        # document's failure; each page has a boundary of its own in _render_page.
        try:
            with open_document(doc.src, password=opt.password, max_image_pixels=opt.max_image_pixels) as reader:
                self._start_doc(doc, reader)
                self.put(("doc", doc))
                for index in doc.wanted:
                    if self.ctx.stop.is_set():
                        return
                    if index in doc.done:
                        continue
                    self.put(self._render_page(doc, reader, index))
        except Exception as e:
            if is_run_level(e):
                raise
            log.debug("%r failed", doc.src.path, exc_info=True)
            self.put(("failed", doc, ("unreadable: " if isinstance(e, OSError) else "") + reason(e), False))
            return
        self.put(("end", doc))

    def _start_doc(self, doc: Doc, reader: DocumentReader) -> None:
        """Choose the pages, start the document's result and pick up pages an earlier run finished."""
        opt = self.ctx.options
        enter("page_count", doc.src.path)
        try:
            wanted = parse_page_ranges(opt.pages, reader.page_count) if opt.pages else list(range(reader.page_count))
        except ValueError as e:
            raise InputError(str(e)) from e
        if not wanted:
            raise InputError(f"--pages {opt.pages} selects no page of {reader.page_count}")
        doc.wanted = wanted
        doc.result = DocResult(
            source=doc.src.path, source_rel=source_path_for(doc.src, doc.paths), size=doc.src.path.stat().st_size,
            sha256=doc.sha256, page_count=reader.page_count, model=self.ctx.model_info,
            settings={**self.ctx.settings, "state_key": doc.key}, pages=[], password=opt.password,
        )
        doc.result.warnings.extend(reader.warnings)
        if not opt.stdout:
            doc.partial = PartialPages(partial_path(doc.paths.json), doc.key)
            # Failed pages, truncated ones due again and pages longer than the limit are left out: they run again.
            resumed = {} if opt.force else {
                i: p for i, p in kept_pages(doc.partial, doc.paths.json, opt.retry_truncated,
                                            opt.max_new_tokens).items() if i in wanted}
            doc.partial.start(resumed.values())
            doc.done.update(resumed)
            doc.resumed = set(resumed)

    def _render_page(self, doc: Doc, reader: DocumentReader, index: int) -> object:
        """Render and plan one page here (MuPDF is single-threaded), then preprocess it in the pool.

        Returns a Future of the page's request, or an error record for a page that cannot be rendered.
        """
        t0 = time.perf_counter()
        opt = self.ctx.options
        try:
            pw, ph = reader.page_size(index)
            choice = None
            est = None
            # An image file is its own render: decode it once, for the estimate and for the model.
            image = reader.render(index) if reader.kind != "pdf" else None
            verdict = None
            if opt.skip_blank or opt.rotate or opt.deskew:
                verdict = scan_page(reader, index, image, opt)
                if verdict.blank:
                    return ("blank", doc, index, blank_page(index, reader, verdict, time.perf_counter() - t0))
                if verdict.rotation in (90, 270):
                    pw, ph = ph, pw  # the model sees the page upright
            if opt.mode == AUTO:
                from deepocr_cli.planning.plan import plan_page

                enter("estimate", doc.src.path)
                est, choice = plan_page(reader, index, opt, image, family=self.ctx.family)
                mode = choice.mode
            else:
                mode = Mode(opt.mode)
            if reader.kind == "pdf":
                # Render once at the size of the mode an escalation could need, so a re-run needs no re-render.
                size_mode = escalation_target(self.ctx, mode) or mode
                rw, rh = self.ctx.family.render_size(size_mode, pw, ph, opt.min_tiles, opt.max_tiles)
                if verdict is not None and verdict.rotation in (90, 270):
                    rw, rh = rh, rw  # rendered as the source lies, turned below
                image = reader.render(index, (rw, rh))
            transform = None
            if verdict is not None and (verdict.rotation or verdict.skew):
                image, transform = prepare_page(image, verdict)
            t1 = time.perf_counter()
            w, h = image.size
            grid = self.ctx.family.grid_for(mode, w, h, opt.min_tiles, opt.max_tiles)
            page = PageResult(
                index=index, width=w, height=h, mode=mode.value, grid=grid,
                vision_tokens=self.ctx.family.vision_tokens(mode, grid),
                image_embeddings=self.ctx.family.image_embeddings(mode, grid),
            )
            page.timing["render"] = round(t1 - t0, 4)
            page.warnings.extend(reader.page_warnings(index))
            if est is not None:
                page.plan = {"estimate": est.to_json(), "choice": choice.to_json(), "target": opt.max_compression}
            if verdict is not None:
                page.scan = verdict.to_json()
                if transform is not None:  # the size of the image the model saw, for --reparse
                    page.scan["model_size"] = list(transform.size)
            work = Page(doc, page, image, choice, transform=transform)
            return self.pool.submit(self._preprocess, work, mode)
        except Exception as e:  # the page's boundary: a broken page (even a MemoryError) fails only itself
            if is_run_level(e):
                raise
            log.debug("page %d of %r failed to render", index + 1, doc.src.path, exc_info=True)
            return ("page_error", doc, index, PageError("render", reason(e)))

    def _preprocess(self, work: Page, mode: Mode) -> object:
        """Pool worker: the page's request, or an error record if its image cannot be preprocessed."""
        try:
            return page_request(self.ctx, work, mode, attempt=0)
        except Exception as e:  # noqa: BLE001 - one bad page must not stop the document (run-level errors
            # surface when the model is called)
            log.debug("page %d of %r failed to preprocess", work.page.index + 1, work.doc.src.path, exc_info=True)
            return ("page_error", work.doc, work.page.index, PageError("preprocess", reason(e)))
