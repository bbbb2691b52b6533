"""deepocr: batch PDF/image to Markdown and JSON with DeepSeek-OCR.

The public Python API (the CLI is a thin layer over it)::

    from deepocr_cli import ConvertOptions, convert, plan

    report = convert(["papers/"], ConvertOptions(mode="auto", formats=("md", "json")))
    print(report.exit_code, report.to_json()["totals"])
    print(plan(["papers/"], ConvertOptions())["files"][0]["pages"][0]["mode"])

Names are imported on first use, so ``import deepocr_cli`` stays cheap (no torch, no PyMuPDF).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from deepocr_cli.errors import ExitCode
    from deepocr_cli.options import ConvertOptions
    from deepocr_cli.planning.plan import plan_documents as plan
    from deepocr_cli.run.convert import convert

_LAZY = {
    "convert": ("deepocr_cli.run.convert", "convert"),
    "plan": ("deepocr_cli.planning.plan", "plan_documents"),
    "ConvertOptions": ("deepocr_cli.options", "ConvertOptions"),
    "ExitCode": ("deepocr_cli.errors", "ExitCode"),
}

__all__ = ["ConvertOptions", "ExitCode", "__version__", "convert", "plan"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'deepocr_cli' has no attribute {name!r}")
