"""Shared workload for the scale-out tests: the sample documents plus a multi-page PDF, and the outputs of a
plain single-process run of them (the reference every scaled run must reproduce byte for byte)."""

from __future__ import annotations

from pathlib import Path

import pymupdf
import pytest
from scale_helpers import options

from deepocr_cli.run.convert import convert
from deepocr_cli.sample_docs import make_sample_docs


@pytest.fixture(scope="session")
def workload(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("scale-src")
    make_sample_docs(src)
    doc = pymupdf.open()
    for i in range(6):
        doc.new_page(width=595, height=842).insert_textbox(
            pymupdf.Rect(50, 50, 545, 800), f"Page {i + 1}. " + "A longer report, page after page. " * (5 + 8 * i),
            fontsize=11)
    doc.save(src / "report.pdf")
    return src


@pytest.fixture(scope="session")
def reference(workload: Path, scripted_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scale-reference") / "out"  # as deep as the tests' tmp_path / "out": the JSON
    # records the source relative to itself
    report = convert([workload], options(scripted_checkpoint, out))
    assert report.exit_code == 0 and report.count("converted") >= 7
    return out
