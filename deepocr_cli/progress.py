"""Run progress on stderr: rich bars on a terminal, timestamped log lines otherwise (cron, pipes)."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from types import TracebackType

from deepocr_cli.boundary import show_path
from deepocr_cli.outputs.results import PageResult
from deepocr_cli.run.report import STATUSES, FileReport, Reporter, RunReport

log = logging.getLogger("deepocr")


class CliReporter(Reporter):
    """Progress for the CLI. On a TTY: bars for files and pages with pages/s, tokens/s and ETA."""

    def __init__(self, quiet: bool = False, verbose: int = 0) -> None:
        self.quiet = quiet
        self.verbose = verbose
        self.tty = sys.stderr.isatty() and not quiet
        self.t0 = time.perf_counter()
        self.pages = 0
        self.tokens = 0
        self._progress = None
        self._files_task = None
        self._pages_task = None
        self._total_pages = 0

    def __enter__(self) -> CliReporter:
        if self.tty:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                console=Console(stderr=True), transient=False,
            )
            self._progress.start()
            self._files_task = self._progress.add_task("files", total=None, rate="")
            self._pages_task = self._progress.add_task("pages", total=0, rate="")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()

    def _rate(self) -> str:
        dt = max(time.perf_counter() - self.t0, 1e-9)
        return f"{self.pages / dt:.2f} pages/s  {self.tokens / dt:.0f} tok/s"

    def run_started(self, files: int) -> None:
        if self._progress is not None:
            self._progress.update(self._files_task, total=files)

    def doc_started(self, source: str, pages: int) -> None:
        self._total_pages += pages
        if self._progress is not None:
            self._progress.update(self._pages_task, total=self._total_pages)
        elif not self.quiet:
            log.info("converting %s (%d page%s)", show_path(source), pages, "" if pages == 1 else "s")

    def doc_resumed(self, source: str, done: int, total: int) -> None:
        name = Path(source).name
        if self._progress is not None:
            self._progress.update(self._pages_task, advance=done)
            self._progress.console.print(f"resuming {name}: {done} of {total} pages already done")
        elif not self.quiet:
            log.info("resuming %s: %d of %d pages already done", name, done, total)

    def page_done(self, source: str, page: PageResult) -> None:
        self.pages += 1
        self.tokens += page.generated_tokens
        if self._progress is not None:
            self._progress.update(self._pages_task, advance=1, rate=self._rate())
        elif self.verbose and not self.quiet:
            state = "error: " + page.error.message if page.error else ("truncated" if page.truncated else "ok")
            log.info("  page %d: %s, %d tokens, %s", page.index + 1, page.mode or "-", page.generated_tokens, state)

    def doc_done(self, report: FileReport) -> None:
        if self._progress is not None:
            self._progress.update(self._files_task, advance=1, rate="")
        line = f"{report.status} {show_path(report.source)}" + (f": {report.reason}" if report.reason else "")
        if report.warnings:
            line += f" ({len(report.warnings)} warning(s): {'; '.join(report.warnings)[:300]})"
        if report.status in ("failed", "partial"):
            if self._progress is not None:
                self._progress.console.print(f"[red]{line}[/red]")
            else:
                log.warning("%s", line)
        elif not self.quiet and self._progress is None:
            log.info("%s", line)


def summary_line(report: RunReport) -> str:
    """Run summary for stderr: one line, plus one per worker with --devices / --ray."""
    t = report.to_json()["totals"]
    files = ", ".join(f"{t[s]} {s}" for s in STATUSES if t[s] or s in ("converted", "failed"))
    files += f" ({t['with_warnings']} with warnings)" if t.get("with_warnings") else ""
    resumed = f" (+{t['resumed_pages']} resumed)" if t["resumed_pages"] else ""
    blank = f", {t['blank_pages']} blank (no model call)" if t.get("blank_pages") else ""
    line = (
        f"deepocr: {files}; {t['pages']} pages generated{resumed}{blank}, {t['vision_tokens']} vision tokens, "
        f"{t['generated_tokens']} generated tokens in {t['wall_s']:.1f} s ({t['pages_per_s']:.2f} pages/s)"
        + engine_line(report.engine)
    )
    if t["truncated_pages"]:
        kept, new = t["truncated_kept"], t["truncated_pages"] - t["truncated_kept"]
        line += f"; truncated pages: {new} new" + (
            f", {kept} kept from earlier runs with the same settings (--retry-truncated retries them)" if kept else "")
    for w in report.workers:
        line += (f"\n  worker {w['worker']} ({w['device']}{' on ' + w['host'] if w['host'] else ''}): "
                 f"{w['requests']} requests, {w['generated_tokens']} tokens in {w['busy_s']:.1f} s busy "
                 f"({w['pages_per_s']:.2f} pages/s, {w['tokens_per_s']:.1f} tokens/s)"
                 + (f", died {w['deaths']}x" if w["deaths"] else ""))
    return line


def engine_line(m: dict) -> str:
    """The scheduler's figures (``EngineMetrics.report()``) for a summary line; empty when the model never ran."""
    if not m:
        return ""
    return (f"; engine {m['generated_tok_per_s']:.1f} tok/s, slot occupancy {m['slot_occupancy']:.0%} "
            f"(avg {m['avg_running_sequences']:.1f} of {m['slots']} running), KV peak "
            f"{m['kv_peak_bytes'] / 2**20:.1f} MiB, {m['preemptions']} preemptions")
