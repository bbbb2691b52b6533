"""A document read back from its written JSON, so other formats can be (re)built without the model."""

from __future__ import annotations

import json
from pathlib import Path

from deepocr_cli.outputs.results import DocResult, PageResult


def load_stored(json_path: Path, source: Path) -> DocResult:
    """Rebuild the `DocResult` a JSON output was written from (see docs/output-schema.md).

    Args:
        json_path: the document's ``NAME.json``.
        source: the source file the JSON describes (renderers such as pdf and html read it again).

    Returns:
        The document, pages as written (figures come back as `StoredFigure`s).

    Raises:
        OSError: the JSON cannot be read.
        ValueError, KeyError, TypeError: it is not a deepocr document JSON.
    """
    data = json.loads(json_path.read_text(encoding="utf-8"))
    src = data["source"]
    return DocResult(
        source=source,
        source_rel=str(src["path"]),
        size=int(src["size"]),
        sha256=str(src["sha256"]),
        page_count=int(src["page_count"]),
        model=dict(data["model"]),
        settings=dict(data["settings"]),
        pages=[PageResult.from_json(p) for p in data["pages"]],
        errors=list(data.get("errors") or []),
        warnings=list(data.get("warnings") or []),
        status=str(data.get("status", "ok")),
    )
