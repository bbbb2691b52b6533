"""One conversion run, top to bottom: the flow of a page from the producer to its written document.

1. `produce.Producer` (background thread) locks each document, resumes it, renders, plans and preprocesses
   its pages into the run's queue.
2. `Runner._consume` (this thread) feeds requests (escalated re-runs and figure crops first) to the engine's
   continuous-batching scheduler and takes each finished sequence as soon as it ends.
3. `Runner._on_page_result`: the page's text is parsed into blocks; a truncated or over-budget page in auto
   mode is re-run one mode up; its figures are sent back to the model (deep parsing).
4. `finish.finish_page` saves crops and checkpoints the page; `finish.maybe_finish_doc` writes the document
   once all its pages are done.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from typing import Any

from deepocr_cli import prompts
from deepocr_cli.boundary import enter, is_run_level, reason
from deepocr_cli.errors import OutOfResourcesError
from deepocr_cli.options import ConvertOptions
from deepocr_cli.outputs.page import read_page
from deepocr_cli.outputs.parse import strip_eos
from deepocr_cli.outputs.repetition import find_loops
from deepocr_cli.outputs.results import PageError, PageResult
from deepocr_cli.planning import rates
from deepocr_cli.planning.modes import Mode
from deepocr_cli.run.finish import finish_page, maybe_finish_doc
from deepocr_cli.run.jobs import DONE, Doc, Page, Request, RunContext
from deepocr_cli.run.produce import Producer, escalation_target, ngram_window, page_request
from deepocr_cli.run.report import FileReport, Reporter, RunReport, file_failed

log = logging.getLogger(__name__)


class Runner:
    """Owns one run: a producer thread renders and plans pages; this thread batches them through the model."""

    def __init__(self, engine: Any, options: ConvertOptions, reporter: Reporter, report: RunReport,
                 model_info: dict, settings: dict) -> None:
        model_info = {**model_info, "dtype": str(getattr(engine, "dtype", "")).replace("torch.", ""),
                      "device": str(getattr(engine, "device", ""))}
        self.batch_size = options.batch_size or engine.suggested_batch_size(options.max_new_tokens)
        # One batch ahead plus a few pages: prepared Gundam pages are ~50 MB each in host memory.
        self.ctx = RunContext(engine, options, reporter, report, model_info, settings,
                              queue.Queue(maxsize=self.batch_size + 8))
        from deepocr_cli.model import NGramConfig

        # the widest window any request of the run may ask for (each request carries its own: produce.ngram_window)
        window = max(options.ngram_window, self.ctx.family.image_ngram_window or 0)
        self.ngram = NGramConfig(size=options.ngram_size, window=window, enabled=options.ngram_size > 0)

    def run(self, docs: list[Doc]) -> None:
        """Convert the documents; on interrupt, finished pages stay recorded and locks are released."""
        ctx = self.ctx
        producer = Producer(ctx)
        thread = threading.Thread(target=producer.run, args=(docs,), name="deepocr-render", daemon=True)
        thread.start()
        try:
            self._consume()
        finally:
            ctx.stop.set()
            thread.join(timeout=5)
            producer.shutdown()
            rates.record(ctx.model_info.get("fingerprint") or ctx.model_info["id"], ctx.model_info["device"],
                         ctx.rate_samples)
            for doc in docs:
                if doc.lock is not None:
                    doc.lock.release()
        if producer.error is not None:
            raise producer.error

    # ----- batches through the model

    def _consume(self) -> None:
        """Keep the scheduler fed (run-made requests first) and hand each finished sequence on at once."""
        ctx, engine = self.ctx, self.ctx.engine
        sched = engine.scheduler(self.batch_size, self.ngram)
        producer_done = False
        while True:
            while len(sched.waiting) < max(4, sched.slots // 4):  # enough queued that admissions never wait
                if ctx.internal:
                    req = ctx.internal.popleft()
                else:
                    try:  # block only while the model is idle
                        item = DONE if producer_done else ctx.queue.get(block=not sched.has_work)
                    except queue.Empty:
                        break
                    if isinstance(item, Future):
                        item = item.result()
                    if item is DONE:
                        producer_done = True
                        break
                    if not isinstance(item, Request):
                        self._on_event(item)
                        continue
                    req = item
                self._admit(sched, req)
            if not sched.has_work and producer_done and not ctx.internal:
                ctx.report.engine = sched.metrics.report()
                return
            try:
                finished = sched.step() if sched.has_work else []
            except Exception as e:
                if is_run_level(e):
                    raise
                # A model step failed for the sequences in flight together: rerun each alone in a fresh
                # scheduler, so that only the one that fails on its own is a failed page (boundary.py).
                log.debug("a model step failed (%s); running its %d sequence(s) one by one", e, len(sched.running))
                flight = [s.request.tag.tag for s in [*sched.running, *sched.waiting]]
                sched = engine.scheduler(self.batch_size, self.ngram)
                for req in flight:
                    self._run_alone(req)
                continue
            for done in finished:
                self._deliver(done)

    def _admit(self, sched: Any, req: Request) -> None:
        """Hand a request to the scheduler; one that cannot be admitted (bad prompt) fails its page alone."""
        try:
            enter("generate" if req.kind == "page" else "figures", req.work.doc.src.path)
            req.prepared.tag = req
            sched.add(self.ctx.engine.engine_request(req.prepared, self.ctx.options.max_new_tokens))
        except Exception as e:
            if is_run_level(e):
                raise
            self._on_request_error(req, e)

    def _run_alone(self, req: Request) -> None:
        """Generate one request in a scheduler of its own; its failure is its page's."""
        engine = self.ctx.engine
        sched = engine.scheduler(1, self.ngram)
        try:
            enter("generate" if req.kind == "page" else "figures", req.work.doc.src.path)
            sched.add(engine.engine_request(req.prepared, self.ctx.options.max_new_tokens))
            finished = []
            while sched.has_work:
                finished.extend(sched.step())
        except Exception as e:
            if is_run_level(e):
                raise
            self._on_request_error(req, e)
            return
        for done in finished:
            self._deliver(done)

    def _deliver(self, done: Any) -> None:
        """A finished sequence: its page's (or figure's) answer goes on; an error there fails that page only."""
        res = self.ctx.engine.result(done)
        if res.error:  # a page larger than the whole KV budget: out of memory at batch size 1 (exit 7)
            raise OutOfResourcesError(f"out of memory: a page {res.error}; lower --max-new-tokens, "
                                      "use a smaller mode, or free GPU memory")
        req = res.tag
        req.work.page.timing["generate"] = round(req.work.page.timing.get("generate", 0) + res.seconds, 4)
        try:
            (self._on_page_result if req.kind == "page" else self._on_figure_result)(req, res)
        except Exception as e:
            if is_run_level(e):
                raise
            self._on_request_error(req, e)

    def _on_request_error(self, req: Request, exc: BaseException) -> None:
        """One request failed on its own: its page is a failed page (a figure's failure fails its page too)."""
        work = req.work
        if work.doc.result is None or work.page.index in work.doc.done:
            return
        log.debug("page %d of %r failed", work.page.index + 1, work.doc.src.path, exc_info=exc)
        work.page.error = PageError("generate" if req.kind == "page" else "figures", reason(exc))
        if req.kind == "figure":
            work.figures_pending -= 1
            if work.figures_pending > 0:
                return
        finish_page(self.ctx, work)

    def _on_event(self, item: tuple) -> None:
        ctx = self.ctx
        kind, doc = item[0], item[1]
        src = str(doc.src.path)
        if kind == "doc":
            ctx.reporter.doc_started(src, len(doc.wanted))
            if doc.resumed:
                ctx.reporter.doc_resumed(src, len(doc.resumed), len(doc.wanted))
        elif kind == "page_error":
            _, _, index, err = item
            assert doc.result is not None
            page = PageResult(index=index, width=0, height=0, mode="", grid=(1, 1), vision_tokens=0,
                              image_embeddings=0, error=err)
            finish_page(ctx, Page(doc, page, None))
        elif kind == "blank":
            page = item[3]
            finish_page(ctx, Page(doc, page, None))
        elif kind == "end":
            doc.all_submitted = True
            maybe_finish_doc(ctx, doc)
        elif kind in ("busy", "uptodate"):
            status, reason = ("busy", "being converted by another deepocr process") if kind == "busy" else (
                "skipped", "up to date")
            fr = FileReport(src, status, reason)
            ctx.report.files.append(fr)
            ctx.reporter.doc_done(fr)
        elif kind == "failed":
            _, _, reason, output = item
            if doc.lock is not None:
                doc.lock.release()
            file_failed(ctx.report, ctx.reporter, src, reason, output)

    # ----- a page's answer: escalate, parse, deep-parse its figures

    def _on_page_result(self, req: Request, res: Any) -> None:
        ctx, work, page, opt = self.ctx, req.work, req.work.page, self.ctx.options
        attempt = work.attempts[-1]
        attempt.update(generated_tokens=res.generated_tokens, truncated=res.truncated,
                       actual_ratio=round(res.generated_tokens / ctx.family.vision_tokens(Mode(attempt["mode"]), req.prepared.image.grid), 3),
                       repeating=_repeats(res.text))
        if self._should_escalate(work, res):
            up = escalation_target(ctx, Mode(attempt["mode"]))
            assert up is not None
            work.first = (res, page.mode, page.grid)
            grid = ctx.family.grid_for(up, page.width, page.height, opt.min_tiles, opt.max_tiles)
            page.mode, page.grid = up.value, grid
            page.vision_tokens, page.image_embeddings = ctx.family.vision_tokens(up, grid), ctx.family.image_embeddings(up, grid)
            ctx.internal.append(page_request(ctx, work, up, attempt=1))
            return
        first, work.first = work.first, None
        if first is not None and not _bad(work.attempts[0]) and _bad(attempt):
            # The escalated run looped where the first did not: keep the first attempt.
            res, mode, grid = first
            page.mode, page.grid = mode, grid
            page.vision_tokens = ctx.family.vision_tokens(Mode(mode), grid)
            page.image_embeddings = ctx.family.image_embeddings(Mode(mode), grid)
        page.raw_text, page.generated_tokens, page.truncated = res.text, res.generated_tokens, res.truncated
        if page.plan is not None:
            page.plan["attempts"] = work.attempts
            page.plan["kept_attempt"] = next(a["attempt"] for a in work.attempts if a["mode"] == page.mode)
            ratio = page.generated_tokens / page.vision_tokens if page.vision_tokens else 0.0
            page.plan["actual_ratio"] = round(ratio, 3)
            page.plan["at_risk"] = bool(ratio > opt.max_compression)
        try:
            enter("parse", work.doc.src.path)
            parsed = read_page(res.text, page.width, page.height, opt.task)
            page.blocks, page.warnings, page.repetition = parsed.blocks, list(parsed.warnings), parsed.repetition
        except Exception as e:  # noqa: BLE001 - the parser is tolerant; this guards against a bug losing a page
            page.error = PageError("parse", reason(e))
        if page.truncated:
            page.warnings.append("truncated: the model stopped at --max-new-tokens without finishing the page")
        self._submit_figures(work)
        if work.figures_pending == 0:
            finish_page(ctx, work)

    def _should_escalate(self, work: Page, res: Any) -> bool:
        if len(work.attempts) > 1 or escalation_target(self.ctx, Mode(work.attempts[-1]["mode"])) is None:
            return False
        from deepocr_cli.planning.autoplan import needs_escalation

        ratio = work.attempts[-1]["actual_ratio"]
        # A page that looped (even one that then ended normally) is retried one mode up, like a truncated one.
        return needs_escalation(_bad(work.attempts[-1]), ratio, self.ctx.options.max_compression)

    def _submit_figures(self, work: Page) -> None:
        opt = self.ctx.options
        if not (opt.deep and opt.task == "markdown" and work.image is not None):
            return
        from deepocr_cli.outputs.figures import crop_for_figure, figure_mode

        figures = [b for b in work.page.blocks if b.label == "image" and b.boxes_px][: opt.deep_max_per_page]
        for block in figures:
            try:
                enter("figures", work.doc.src.path)
                crop = crop_for_figure(work.image, block.boxes_px[0])
                mode = figure_mode(*crop.size)
                prepared = self.ctx.engine.prepare(crop, mode, prompts.PARSE_FIGURE, opt.min_tiles, opt.max_tiles)
                prepared.ngram_window = ngram_window(self.ctx, image_input=True)  # a crop is an image
            except ValueError as e:  # a box with no area on the page: the model's answer, not a fault
                work.page.warnings.append(f"figure {block.index}: not parsed ({e})")
                continue
            except Exception as e:  # noqa: BLE001 - a crop that breaks fails its page, never the document
                work.page.error = PageError("figures", f"figure {block.index}: {reason(e)}")
                continue
            work.figures_pending += 1
            self.ctx.internal.append(Request("figure", work, prepared, block))

    def _on_figure_result(self, req: Request, res: Any) -> None:
        from deepocr_cli.outputs.figures import classify_figure_answer

        assert req.block is not None
        enter("figures", req.work.doc.src.path)
        req.block.figure = classify_figure_answer(res.text, truncated=res.truncated)
        req.work.figures_pending -= 1
        if req.work.figures_pending == 0:
            finish_page(self.ctx, req.work)


def _repeats(text: str) -> bool:
    """Whether a page's output holds a loop (see `deepocr_cli.outputs.repetition`)."""
    return bool(find_loops(strip_eos(text)[0]))


def retry_reason(text: str, truncated: bool) -> str | None:
    """Why an answer is worth a retry one mode up: ``truncated`` (token limit), ``repetition`` (a loop, even
    one the model then ended normally), or None."""
    if truncated:
        return "truncated"
    return "repetition" if _repeats(text) else None


def _bad(attempt: dict) -> bool:
    """An attempt worth retrying (or not worth keeping over a clean one): truncated or looping."""
    return bool(attempt.get("truncated")) or bool(attempt.get("repeating"))
