"""The JSON output: the versioned document record described in docs/output-schema.md."""

from __future__ import annotations

from typing import Any

from deepocr_cli.outputs.page import PARSER_VERSION
from deepocr_cli.outputs.results import SCHEMA_VERSION, DocResult, PageResult


def _page_json(page: PageResult) -> dict[str, Any]:
    ratio = page.compression_ratio
    out: dict[str, Any] = {}
    for key, value in page.to_json().items():
        out[key] = value
        if key == "index":
            out["page"] = page.index + 1  # 1-based, as in the Markdown markers and crop names
        elif key == "generated_tokens":
            out["compression_ratio"] = round(ratio, 4) if ratio is not None else None
    return out


def render_json(doc: DocResult) -> dict[str, Any]:
    """Build the versioned JSON document described in docs/output-schema.md."""
    pages = [_page_json(p) for p in doc.pages]
    timing: dict[str, float] = {}
    for page in doc.pages:
        for stage, seconds in page.timing.items():
            timing[stage] = round(timing.get(stage, 0.0) + seconds, 6)
    totals = {
        "pages": len(doc.pages),
        "pages_failed": sum(p.error is not None for p in doc.pages),
        "pages_truncated": sum(p.truncated for p in doc.pages),
        "pages_repeating": sum(bool(p.repetition) for p in doc.pages),
        "blocks": sum(len(p.blocks) for p in doc.pages),
        "generated_tokens": sum(p.generated_tokens for p in doc.pages),
        "vision_tokens": sum(p.vision_tokens for p in doc.pages),
        "timing": timing,
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "parser_version": PARSER_VERSION,
        "source": {
            "path": doc.source_rel,
            "size": doc.size,
            "sha256": doc.sha256,
            "page_count": doc.page_count,
        },
        "model": doc.model,
        "settings": doc.settings,
        "status": doc.status,
        "errors": list(doc.errors),
        "warnings": list(doc.warnings),
        "totals": totals,
        "pages": pages,
    }
