"""A run whose model work is spread over several workers (`deepocr_cli.scale.engine.RemoteEngine`).

Everything a run promises stays in this process: locks, resume, per-page checkpoints, escalation, figure
passes, writing. `ScaledRunner` differs from `Runner` only where several workers show: the batch gathered per
generate() call feeds every worker, a request can come back as a `TaskError` (its image could not be
prepared, or it kept killing workers) and then fails its page like any page error, per-worker figures go into
the report, and pages timed on workers that share the machine's cores or GPUs are not recorded as one device's measured
rates (``plan`` reads those).
"""

from __future__ import annotations

import queue
from typing import Any

from deepocr_cli.options import ConvertOptions
from deepocr_cli.outputs.results import PageError, PageResult
from deepocr_cli.run.finish import finish_page
from deepocr_cli.run.jobs import Doc, Page, Request
from deepocr_cli.run.report import Reporter, RunReport
from deepocr_cli.run.runner import Runner
from deepocr_cli.scale.tasks import TaskError


class _NoRates(dict):
    """A rate tally that keeps nothing: a page timed on one of several workers is not one device's speed."""

    def setdefault(self, key: Any, default: Any = None) -> Any:
        return default


class ScaledRunner(Runner):
    """`Runner` over a RemoteEngine; see the module docstring."""

    def __init__(self, engine: Any, options: ConvertOptions, reporter: Reporter, report: RunReport,
                 model_info: dict, settings: dict) -> None:
        super().__init__(engine, options, reporter, report, model_info, settings)
        self.batch_size = engine.total_batch(options.batch_size)
        self.ctx.queue = queue.Queue(maxsize=self.batch_size + 8)
        self.ctx.rate_samples = _NoRates()

    def _on_page_result(self, req: Request, res: Any) -> None:
        if not isinstance(res, TaskError):
            super()._on_page_result(req, res)
            return
        work = req.work
        if res.stage == "preprocess":
            # As a page whose preprocessing failed in one process: no mode, no tokens, the error says why.
            page = PageResult(index=work.page.index, width=0, height=0, mode="", grid=(1, 1), vision_tokens=0,
                              image_embeddings=0, error=PageError(res.stage, res.message))
            page.timing = work.page.timing
            finish_page(self.ctx, Page(work.doc, page, None))
            return
        work.page.error = PageError(res.stage, res.message)  # "generate" (as in one process) or "worker"
        finish_page(self.ctx, work)

    def _on_figure_result(self, req: Request, res: Any) -> None:
        if not isinstance(res, TaskError):
            super()._on_figure_result(req, res)
            return
        assert req.block is not None
        work = req.work
        if res.stage == "preprocess":  # as a crop that cannot be prepared in one process: a warning
            work.page.warnings.append(f"figure {req.block.index}: not parsed ({res.message})")
        else:  # as a figure whose generation failed in one process: its page fails
            work.page.error = PageError("figures", res.message)
        work.figures_pending -= 1
        if work.figures_pending == 0:
            finish_page(self.ctx, work)


def run_scaled(engine: Any, docs: list[Doc], options: ConvertOptions, reporter: Reporter, report: RunReport,
               model_info: dict, settings: dict, close: bool = True) -> None:
    """Run the documents through a RemoteEngine's workers; the workers stop at the end (also on interrupt)."""
    try:
        ScaledRunner(engine, options, reporter, report, model_info, settings).run(docs)
    finally:
        report.workers = engine.worker_report()
        if close:
            engine.close()
