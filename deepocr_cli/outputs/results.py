"""Plain result records shared by the pipeline and the writer, with a lossless JSON round trip for resuming."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepocr_cli.outputs.parse import Block, Box, Cell, Table

log = logging.getLogger(__name__)

#: Version of the JSON output schema (docs/output-schema.md). Additive changes keep it; breaking ones bump it.
SCHEMA_VERSION = 1

PAGE_ERROR_STAGES = ("render", "infer", "parse", "write", "deep")


@dataclass
class PageError:
    """Why a page has no usable output.

    Attributes:
        stage: where it failed: render, preprocess, infer, parse, write or deep.
        message: a one-line explanation for the user.
    """

    stage: str
    message: str


@dataclass
class StoredFigure:
    """A deep-parsing result read back from JSON; it renders like the object that produced it.

    Attributes:
        data: the figure's own ``to_json()`` dict, kept verbatim.
        alt_text: alt text for the crop's image link.
        markdown_text: the Markdown the figure contributed below the image link.
    """

    data: dict[str, Any]
    alt_text: str | None = None
    markdown_text: str = ""

    def to_json(self) -> dict[str, Any]:
        """Return the stored figure dict unchanged."""
        return self.data

    def markdown(self) -> str:
        """Return the stored Markdown."""
        return self.markdown_text


def table_to_json(table: Table) -> dict[str, Any]:
    """Serialise a table: cells with their spans, plus the expanded grid for easy consumption."""
    return {
        "rows": [
            [{"text": c.text, "rowspan": c.rowspan, "colspan": c.colspan} for c in row] for row in table.rows
        ],
        "grid": table.grid(),
    }


def table_from_json(d: dict[str, Any]) -> Table:
    """Inverse of `table_to_json` (the grid is derived, so it is ignored)."""
    return Table([[Cell(c["text"], int(c["rowspan"]), int(c["colspan"])) for c in row] for row in d["rows"]])


def block_to_json(block: Block) -> dict[str, Any]:
    """Serialise a block as documented in docs/output-schema.md."""
    figure = block.figure
    return {
        "index": block.index,
        "label": block.label,
        "boxes": [list(b) for b in block.boxes],
        "boxes_px": [list(b) for b in block.boxes_px],
        "content": block.content,
        "table": table_to_json(block.table) if block.table is not None else None,
        "image_path": block.image_path,
        "image_paths": list(block.image_paths),
        "figure": figure.to_json() if figure is not None else None,  # type: ignore[attr-defined]
        # Kept beside the figure's own dict so a resumed document renders the same Markdown.
        "alt_text": getattr(figure, "alt_text", None) if figure is not None else None,
        "figure_markdown": figure.markdown() if figure is not None else None,  # type: ignore[attr-defined]
        "level": block.level,
        "align": block.align,
        "caption": block.caption,
        "caption_of": block.caption_of,
    }


def _box(values: list[int]) -> Box:
    x1, y1, x2, y2 = (int(v) for v in values)
    return (x1, y1, x2, y2)


def block_from_json(d: dict[str, Any]) -> Block:
    """Inverse of `block_to_json`; a figure comes back as a `StoredFigure`."""
    figure = None
    if d.get("figure") is not None:
        figure = StoredFigure(d["figure"], d.get("alt_text"), d.get("figure_markdown") or "")
    image_path = d.get("image_path")
    return Block(
        index=int(d["index"]),
        label=d["label"],
        boxes=[_box(b) for b in d["boxes"]],
        boxes_px=[_box(b) for b in d["boxes_px"]],
        content=d["content"],
        table=table_from_json(d["table"]) if d.get("table") is not None else None,
        figure=figure,
        image_path=image_path,
        image_paths=list(d.get("image_paths") or ([image_path] if image_path else [])),
        level=d.get("level"),
        align=d.get("align"),
        caption=d.get("caption"),
        caption_of=d.get("caption_of"),
    )


@dataclass
class PageResult:
    """Everything known about one converted page.

    Attributes:
        index: 0-based page index in the source.
        width: rendered pixel width the boxes refer to.
        height: rendered pixel height.
        mode: resolution mode used (see `deepocr_cli.planning.modes.Mode`).
        grid: Gundam tile grid (nw, nh); (1, 1) when untiled.
        vision_tokens: the paper's vision-token count for mode and grid.
        image_embeddings: placeholder ids the decoder received.
        raw_text: model output, special tokens kept, EOS removed.
        generated_tokens: tokens generated (EOS included when emitted).
        truncated: generation stopped without EOS (token limit, usually a repetition loop).
        repetition: loops found in the output and cut to one copy (`deepocr_cli.outputs.repetition.Loop`
            dicts plus ``block``); a page with loops is retried one mode up in auto mode.
        blocks: parsed layout blocks.
        timing: seconds per stage: render, preprocess, generate.
        plan: auto-mode record: estimate, source, chosen mode, predicted/actual ratio, at_risk, attempts.
        warnings: non-fatal problems (parse warnings, skipped crops...).
        error: set when the page failed.
        blank: the page showed no text and no figure; it skipped the model (``scan`` holds the measures).
        scan: scan preparation's verdict (``deepocr_cli.planning.scan.ScanVerdict.to_json``): blank measures,
            rotation applied, orientation, skew; every box is in the coordinates of the page as the source shows
            it, whatever was turned or straightened for the model.
    """

    index: int
    width: int
    height: int
    mode: str
    grid: tuple[int, int]
    vision_tokens: int
    image_embeddings: int
    raw_text: str = ""
    generated_tokens: int = 0
    truncated: bool = False
    repetition: list[dict] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=dict)
    plan: dict | None = None
    warnings: list[str] = field(default_factory=list)
    error: PageError | None = None
    blank: bool = False
    scan: dict | None = None

    @property
    def compression_ratio(self) -> float | None:
        """Generated text tokens per vision token, or None when no vision tokens are known."""
        if self.vision_tokens <= 0:
            return None
        return self.generated_tokens / self.vision_tokens

    def to_json(self) -> dict[str, Any]:
        """Serialise every field (JSON types only); `from_json` restores an equal object."""
        return {
            "index": self.index,
            "width": self.width,
            "height": self.height,
            "mode": self.mode,
            "grid": list(self.grid),
            "vision_tokens": self.vision_tokens,
            "image_embeddings": self.image_embeddings,
            "raw_text": self.raw_text,
            "generated_tokens": self.generated_tokens,
            "truncated": self.truncated,
            "repetition": list(self.repetition),
            "blocks": [block_to_json(b) for b in self.blocks],
            "timing": dict(self.timing),
            "plan": self.plan,
            "warnings": list(self.warnings),
            "error": {"stage": self.error.stage, "message": self.error.message} if self.error else None,
            "blank": self.blank,
            "scan": self.scan,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PageResult:
        """Rebuild a page from `to_json` output (or a page of the written JSON; extra keys are ignored).

        Raises:
            KeyError, TypeError, ValueError: when a required field is missing or of the wrong type.
        """
        nw, nh = (int(v) for v in d["grid"])
        err = d.get("error")
        return cls(
            index=int(d["index"]),
            width=int(d["width"]),
            height=int(d["height"]),
            mode=str(d["mode"]),
            grid=(nw, nh),
            vision_tokens=int(d["vision_tokens"]),
            image_embeddings=int(d["image_embeddings"]),
            raw_text=d.get("raw_text", ""),
            generated_tokens=int(d.get("generated_tokens", 0)),
            truncated=bool(d.get("truncated", False)),
            repetition=list(d.get("repetition") or []),
            blocks=[block_from_json(b) for b in d.get("blocks", [])],
            timing={k: float(v) for k, v in (d.get("timing") or {}).items()},
            plan=d.get("plan"),
            warnings=list(d.get("warnings", [])),
            error=PageError(err["stage"], err["message"]) if err else None,
            blank=bool(d.get("blank", False)),
            scan=d.get("scan"),
        )


@dataclass
class DocResult:
    """One source document's pages, ready to write.

    Attributes:
        source: path of the input file.
        source_rel: its path relative to the input root, as shown to users.
        size: file size in bytes.
        sha256: hex digest of the file (identifies the input for resuming).
        page_count: pages in the source (not only those converted).
        model: ``{"id", "revision", "dtype", "device"}``.
        settings: the options that determine the output (mode, task, max_tiles, max_new_tokens, pages...).
        pages: converted pages in source order.
        errors: document-level problems.
        warnings: document-level warnings (MuPDF's repairs of a damaged PDF).
        status: ok, partial or failed.
    """

    source: Path
    source_rel: str
    size: int
    sha256: str
    page_count: int
    model: dict
    settings: dict
    pages: list[PageResult]
    errors: list[str] = field(default_factory=list)
    status: str = "ok"
    #: the user password the source opened with, for formats that reopen it (never written, never shown)
    password: str | None = field(default=None, repr=False, compare=False)
    warnings: list[str] = field(default_factory=list)
