"""The work items of a run: a document in progress, a page in flight, a request to the model, and the
context every stage of the run shares."""

from __future__ import annotations

import queue
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from deepocr_cli.inputs.discover import SourceDoc
from deepocr_cli.options import ConvertOptions
from deepocr_cli.outputs.parse import Block
from deepocr_cli.outputs.paths import OutputPaths
from deepocr_cli.outputs.results import DocResult, PageResult
from deepocr_cli.planning.families import V1, ModelFamily
from deepocr_cli.run.report import Reporter, RunReport
from deepocr_cli.run.state import DocumentLock, PartialPages


@dataclass
class Doc:
    """One document of the run, from its lock to its written outputs."""

    src: SourceDoc
    paths: OutputPaths
    sha256: str
    key: str
    lock: DocumentLock | None = None
    partial: PartialPages | None = None
    result: DocResult | None = None
    wanted: list[int] = field(default_factory=list)
    done: dict[int, PageResult] = field(default_factory=dict)
    resumed: set[int] = field(default_factory=set)  # pages of `done` an earlier run finished
    all_submitted: bool = False


@dataclass
class Page:
    """One page in flight: its result so far and the image the model sees."""

    doc: Doc
    page: PageResult
    image: Any  # PIL image of the rendered page; dropped once the page is written
    choice: Any = None  # autoplan.ModeChoice in auto mode
    attempts: list[dict] = field(default_factory=list)
    figures_pending: int = 0
    first: tuple | None = None  # (result, mode, grid) of attempt 0 while an escalated attempt runs
    transform: Any = None  # planning.scan.PageTransform when the image was turned or straightened for the model


@dataclass
class Request:
    """One sequence for the model: a page (or an escalated re-run of it), or a figure crop of a page."""

    kind: str  # "page" | "figure"
    work: Page
    prepared: Any
    block: Block | None = None


#: End of the producer's stream.
DONE = object()


@dataclass
class RunContext:
    """What every stage of one run reads: the engine, the options, where results and progress go.

    ``internal`` holds requests the run makes itself (escalated re-runs, figure crops); they go to the model
    before new pages. ``stop`` tells the producer to end early (interrupt, error).
    """

    engine: Any
    options: ConvertOptions
    reporter: Reporter
    report: RunReport
    model_info: dict
    settings: dict
    queue: queue.Queue
    stop: threading.Event = field(default_factory=threading.Event)
    internal: deque[Request] = field(default_factory=deque)
    rate_samples: dict[str, list[float]] = field(default_factory=dict)  # mode -> [pages, generation seconds]

    @property
    def family(self) -> ModelFamily:
        """Geometry of the loaded model (under DeepSeek-OCR-2 the modes are tile caps)."""
        return getattr(self.engine, "family", V1)
