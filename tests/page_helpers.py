"""Text pages drawn by MuPDF for the scan-preparation tests, as the estimator sees them (gray, its resolution)."""

from __future__ import annotations

import numpy as np
import pymupdf

from deepocr_cli.planning.estimate import _render_gray
from deepocr_cli.sample_docs import PROSE

A4 = (595.0, 842.0)


def prose_page(paragraphs: int, fontsize: float, gray: float, fontname: str, repeat: int) -> np.ndarray:
    """An A4 page of the first ``paragraphs`` of the sample prose said ``repeat`` times, in ``fontname``, printed
    at ``gray`` (0 black)."""
    doc = pymupdf.open()
    page = doc.new_page(width=A4[0], height=A4[1])
    text = "\n\n".join((PROSE * repeat)[:paragraphs])
    page.insert_textbox(pymupdf.Rect(60, 60, A4[0] - 60, A4[1] - 60), text, fontsize=fontsize, fontname=fontname,
                        color=(gray, gray, gray))
    return _render_gray(page).copy()
