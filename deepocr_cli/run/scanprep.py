"""Scan preparation inside a run: judge a page before the model (blank, turned, skewed), and map the boxes of a
finished page back to the page as the source shows it."""

from __future__ import annotations

import numpy as np
from PIL import Image

from deepocr_cli.inputs.render import DocumentReader
from deepocr_cli.inputs.scanpage import scan_page_image
from deepocr_cli.options import ConvertOptions
from deepocr_cli.outputs.parse import COORD_MAX
from deepocr_cli.outputs.results import PageResult
from deepocr_cli.planning.image_estimate import work_gray
from deepocr_cli.planning.scan import ScanVerdict, analyse_scan
from deepocr_cli.planning.textest import WORK_LONG_SIDE
from deepocr_cli.planning.upright import PageTransform, transform_for


def analysis_gray(reader: DocumentReader, index: int, image: Image.Image | None, fast: bool = True) -> np.ndarray:
    """The page in gray at the estimator's resolution: the decoded image reduced; for a PDF page, its own JPEG
    when the page is one scanned image (``fast``; see deepocr_cli.inputs.scanpage: a blank page then costs a
    decode, not a render), else a small render."""
    if image is None:
        scanned = scan_page_image(reader, index, WORK_LONG_SIDE) if fast else None
        if scanned is None:
            return reader.render_gray(index, WORK_LONG_SIDE)
        image = scanned
    return work_gray(image)


def scan_page(reader: DocumentReader, index: int, image: Image.Image | None, opt: ConvertOptions) -> ScanVerdict:
    """Scan preparation's verdict on one page, as the options ask (``--no-skip-blank``, ``--no-rotate``,
    ``--no-deskew``)."""
    return analyse_scan(analysis_gray(reader, index, image), blank=opt.skip_blank, rotate=opt.rotate,
                        deskew=opt.deskew)


def blank_page(index: int, reader: DocumentReader, verdict: ScanVerdict, seconds: float) -> PageResult:
    """The finished result of a blank page: no model call, no blocks, the verdict's measures recorded."""
    pw, ph = reader.page_size(index)
    page = PageResult(index=index, width=round(pw), height=round(ph), mode="", grid=(1, 1), vision_tokens=0,
                      image_embeddings=0, blank=True, scan=verdict.to_json())
    page.timing["render"] = round(seconds, 4)
    return page


def _model_box(box: tuple[int, int, int, int], w: int, h: int) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    return (round(x1 / w * COORD_MAX), round(y1 / h * COORD_MAX), round(x2 / w * COORD_MAX),
            round(y2 / h * COORD_MAX))


def map_page_back(page: PageResult, transform: PageTransform | None) -> None:
    """Give every box of a finished page in the coordinates of the source page (before turning and
    straightening): ``boxes_px`` in its pixels, ``boxes`` in the model's 0-999 space over it; ``width`` and
    ``height`` become the source image's."""
    if transform is None or transform.identity:
        return
    w, h = transform.source_size
    for block in page.blocks:
        block.boxes_px = [transform.box(b) for b in block.boxes_px]
        block.boxes = [_model_box(b, w, h) for b in block.boxes_px]
    page.width, page.height = w, h


def stored_transform(page: PageResult) -> PageTransform | None:
    """The transform a converted page's boxes went through (from its JSON ``scan``), or None: what
    ``--reparse`` needs to read the stored raw output (in the coordinates of the image the model saw) again."""
    scan = page.scan or {}
    size = scan.get("model_size")
    if not size or not (scan.get("rotation") or scan.get("skew")):
        return None
    return transform_for((page.width, page.height), int(scan["rotation"]), float(scan["skew"]),
                         (int(size[0]), int(size[1])))
