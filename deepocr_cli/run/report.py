"""What a run reports: per-file outcomes, the run's totals and exit code, and the progress sink the CLI implements."""

from __future__ import annotations

from dataclasses import dataclass, field

from deepocr_cli.errors import ExitCode
from deepocr_cli.outputs.results import PageResult

#: Every FileReport status, in the order totals list them.
STATUSES = ("converted", "partial", "restored", "skipped", "busy", "failed")


@dataclass
class FileReport:
    """Outcome of one input: converted, partial (some pages failed or truncated), restored (missing outputs
    rewritten from the JSON, no model run), skipped (up to date), busy (another run holds it) or failed.

    ``pages``, ``vision_tokens`` and ``generated_tokens`` count the work of this run only: pages resumed from an
    earlier run are in ``resumed_pages``; ``truncated_pages``/``failed_pages`` describe the written document.
    """

    source: str
    status: str
    reason: str | None = None
    outputs: list[str] = field(default_factory=list)
    pages: int = 0
    truncated_pages: int = 0
    repeating_pages: int = 0
    failed_pages: int = 0
    blank_pages: int = 0
    vision_tokens: int = 0
    generated_tokens: int = 0
    resumed_pages: int = 0
    truncated_kept: int = 0  # of truncated_pages, those kept from an earlier run with the same settings
    output_error: bool = False
    warnings: list[str] = field(default_factory=list)  # a damaged PDF's repairs (document, then "pN: ..." pages)

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
    engine: dict = field(default_factory=dict)  # the scheduler's EngineMetrics.report()
    workers: list[dict] = field(default_factory=list)  # per-worker figures with --devices / --ray

    def count(self, status: str) -> int:
        """Number of files with the given status."""
        return sum(1 for f in self.files if f.status == status)

    @property
    def pages(self) -> int:
        """Pages converted in this run."""
        return sum(f.pages for f in self.files)

    @property
    def status(self) -> str:
        """ok (exit 0), partial (exit 3) or error (any other exit code)."""
        return {ExitCode.OK: "ok", ExitCode.PARTIAL: "partial"}.get(self.exit_code, "error")

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
            **{s: self.count(s) for s in STATUSES},
            "pages": self.pages,
            "with_warnings": sum(1 for f in self.files if f.warnings),
            "resumed_pages": sum(f.resumed_pages for f in self.files),
            "truncated_pages": sum(f.truncated_pages for f in self.files),
            "truncated_kept": sum(f.truncated_kept for f in self.files),
            "vision_tokens": sum(f.vision_tokens for f in self.files),
            "generated_tokens": sum(f.generated_tokens for f in self.files),
            "blank_pages": sum(f.blank_pages for f in self.files),
            "wall_s": round(self.wall_s, 3),
            "pages_per_s": round(self.pages / self.wall_s, 4) if self.wall_s > 0 else 0.0,
        }
        out = {"status": self.status, "exit_code": int(self.exit_code), "error": None, "totals": totals,
               "engine": self.engine,
               "files": [f.to_json() for f in self.files]}
        if self.workers:
            out["workers"] = self.workers
        return out


class Reporter:
    """Progress sink; the CLI subclasses it (rich bars on a TTY, log lines otherwise). All calls come
    from the calling thread."""

    def run_started(self, files: int) -> None:
        """Discovery found this many inputs (supported documents plus skipped paths)."""

    def doc_started(self, source: str, pages: int) -> None:
        """A document is being converted."""

    def doc_resumed(self, source: str, done: int, total: int) -> None:
        """A document picks up ``done`` of its ``total`` pages from an earlier run (they are not generated again)."""

    def page_done(self, source: str, page: PageResult) -> None:
        """A page finished (with or without error)."""

    def doc_done(self, report: FileReport) -> None:
        """A document finished, was skipped or failed."""


def file_failed(report: RunReport, reporter: Reporter, source: str, reason: str, output: bool = False) -> None:
    """Record a file that failed as a whole (unreadable, not a document, output not writable)."""
    fr = FileReport(source, "failed", reason, output_error=output)
    report.files.append(fr)
    reporter.doc_done(fr)
