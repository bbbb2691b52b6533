"""ConvertOptions: every setting of a conversion run, validated once, shared by the CLI and the library."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from deepocr_cli.errors import UsageError
from deepocr_cli.outputs.formats import DEFAULT_FORMATS, FORMATS
from deepocr_cli.planning.modes import MAX_ALLOWED_TILES, MODE_ORDER, Mode

DEFAULT_MODEL = "deepseek-ai/DeepSeek-OCR"
AUTO = "auto"
TASKS = ("markdown", "free")
#: Output settings judged per page rather than in the document key (see `ConvertOptions.key_settings`).
PAGE_LEVEL_SETTINGS = ("max_new_tokens",)
#: `--device` values: auto, cpu, mps, cuda or cuda:N (availability is checked when the model loads).
DEVICE_RE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
#: `--dtype` spellings, as `model.loading.resolve_dtype` accepts them.
DTYPES = ("auto", "bfloat16", "bf16", "float16", "fp16", "half", "float32", "fp32", "float")


def default_model() -> str:
    """The model to use when none is given: $DEEPOCR_MODEL, else the official hub id."""
    return os.environ.get("DEEPOCR_MODEL") or DEFAULT_MODEL


@dataclass(frozen=True)
class ConvertOptions:
    """Settings of one `convert` run; invalid combinations raise UsageError at construction."""

    mode: str = AUTO
    model: str = field(default_factory=default_model)
    revision: str | None = None
    device: str = "auto"
    dtype: str | None = None
    batch_size: int | None = None
    min_tiles: int = 2
    max_tiles: int = 6
    pages: str | None = None
    recursive: bool = True
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    output_dir: Path | None = None
    formats: tuple[str, ...] = DEFAULT_FORMATS
    force: bool = False
    task: str = "markdown"
    max_new_tokens: int = 8192
    max_compression: float = 10.0
    min_mode: str = Mode.TINY.value
    max_mode: str = Mode.GUNDAM.value
    escalate: bool = True
    deep: bool = True
    deep_max_per_page: int = 8
    render_molecules: bool = False
    ngram_size: int = 20
    ngram_window: int = 50
    stdout: bool = False
    skip_blank: bool = True
    rotate: bool = True
    deskew: bool = True
    #: user password of encrypted PDFs; never logged, never in outputs or reprs
    password: str | None = field(default=None, repr=False, compare=False)
    max_image_pixels: int | None = 300_000_000  # = inputs.render.DEFAULT_MAX_IMAGE_PIXELS; None: no cap
    retry_truncated: bool = False
    # Scale-out (deepocr_cli.scale); none of these changes a document's output.
    devices: tuple[str, ...] = ()  # one worker process per device: ("cuda:0", "cuda:1"), ("all",), ("cpu", "cpu")
    ray: str | None = None  # local | auto | ray://host:port
    workers: int | None = None  # Ray replicas (default: one per GPU of the cluster)
    worker_retries: int = 2  # times a page whose worker died is retried elsewhere before it is marked failed
    worker_timeout: float | None = None  # seconds per page a worker may hold a batch before it is killed as hung
    shard: tuple[int, int] | None = None  # (I, N): only documents whose path hash falls in shard I of N

    def __post_init__(self) -> None:
        modes = [m.value for m in MODE_ORDER]
        if self.mode not in (AUTO, *modes):
            raise UsageError(f"--mode must be auto or one of {', '.join(modes)}, got {self.mode!r}")
        for name in ("min_mode", "max_mode"):
            if getattr(self, name) not in modes:
                raise UsageError(f"--{name.replace('_', '-')} must be one of {', '.join(modes)}")
        if modes.index(self.min_mode) > modes.index(self.max_mode):
            raise UsageError("--min-mode is above --max-mode")
        if self.task not in TASKS:
            raise UsageError(f"--task must be one of {', '.join(TASKS)}, got {self.task!r}")
        bad = [f for f in self.formats if f not in FORMATS]
        if bad or not self.formats:
            raise UsageError(f"--format takes a comma list of {', '.join(FORMATS)}, got {','.join(self.formats)!r}")
        if not 1 <= self.min_tiles <= self.max_tiles <= MAX_ALLOWED_TILES:
            raise UsageError(f"tile bounds must satisfy 1 <= min <= --max-tiles <= {MAX_ALLOWED_TILES}")
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError("--batch-size must be at least 1")
        if self.max_new_tokens < 1:
            raise UsageError("--max-new-tokens must be at least 1")
        if self.max_compression <= 0:
            raise UsageError("--max-compression must be positive")
        if self.max_image_pixels is not None and self.max_image_pixels < 1:
            raise UsageError("--max-image-pixels must be at least 1")
        if self.deep_max_per_page < 0:
            raise UsageError("--deep-max-per-page must be >= 0")
        if self.pages is not None:
            from deepocr_cli.inputs.render import parse_page_ranges

            try:  # syntax only: which pages exist is a question for each document
                parse_page_ranges(self.pages, 1)
            except ValueError as e:
                raise UsageError(f"--pages: {e}") from None
        if not DEVICE_RE.fullmatch(str(self.device)):
            raise UsageError(f"--device must be auto, cpu, mps, cuda or cuda:N, got {self.device!r}")
        if self.dtype is not None and str(self.dtype).lower() not in DTYPES:
            raise UsageError(f"--dtype must be bfloat16, float16 or float32, got {self.dtype!r}")
        self._check_scale()

    def _check_scale(self) -> None:
        if self.devices and self.ray:
            raise UsageError("--devices and --ray are exclusive (Ray places its own workers)")
        if self.devices and "all" in self.devices and len(self.devices) > 1:
            raise UsageError("--devices all cannot be combined with device names")
        if self.workers is not None and (not self.ray or self.workers < 1):
            raise UsageError("--workers takes a number >= 1 and needs --ray")
        if self.worker_retries < 0:
            raise UsageError("--worker-retries must be >= 0")
        if self.worker_timeout is not None and (self.worker_timeout <= 0 or not (self.devices or self.ray)):
            raise UsageError("--worker-timeout takes seconds > 0 and needs --devices or --ray (a worker process "
                             "can be killed and restarted; the run's own process cannot)")
        if self.shard is not None and not 0 <= self.shard[0] < self.shard[1]:
            raise UsageError("--shard takes I/N with 0 <= I < N")

    def output_settings(self) -> dict:
        """The settings that determine a document's output (recorded in its JSON)."""
        keep = (
            "mode", "min_tiles", "max_tiles", "pages", "task", "max_new_tokens", "max_compression",
            "min_mode", "max_mode", "escalate", "deep", "deep_max_per_page", "ngram_size", "ngram_window",
            "skip_blank", "rotate", "deskew",
        )
        d = asdict(self)
        return {k: d[k] for k in keep}

    def key_settings(self) -> dict:
        """The settings in a document's up-to-date key: a change of any of them reconverts it.

        `--max-new-tokens` is judged page by page instead (greedy decoding gives the same text under any limit
        the page stayed within): a page that ended within the new limit is kept, a truncated one is retried when
        the limit changed (`run.state.page_still_valid`).
        """
        return {k: v for k, v in self.output_settings().items() if k not in PAGE_LEVEL_SETTINGS}
