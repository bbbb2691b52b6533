"""ALTO v4.4 XML (``NAME.alto.xml``): page layout and text for library systems (METS/ALTO).

Coordinates are pixels (``MeasurementUnit`` pixel) of each page as it was rendered for the model; the
processing step states each page's pixel size and, for PDFs, the resolution that size means. Blocks keep
their grounding boxes; lines and word boxes are estimated inside them (`deepocr_cli.outputs.lines`), which the
processing description says.
"""

from __future__ import annotations

import json
import logging
from xml.etree import ElementTree as ET

from deepocr_cli import __version__
from deepocr_cli.outputs.lines import FBox, Line, block_boxes, block_text, layout_lines
from deepocr_cli.outputs.parse import Block
from deepocr_cli.outputs.paths import OutputPaths
from deepocr_cli.outputs.results import DocResult, PageResult

log = logging.getLogger(__name__)

NS = "http://www.loc.gov/standards/alto/ns-v4#"
SCHEMA_LOCATION = f"{NS} http://www.loc.gov/standards/alto/v4/alto-4-4.xsd"
_XSI = "http://www.w3.org/2001/XMLSchema-instance"
_PROCESSING_ID = "deepocr_1"
ESTIMATE_NOTE = (
    "Block boxes are the model's grounding boxes. Text lines and word (String) boxes are estimated inside "
    "each block box: the line count from the box shape and the amount of text, lines of equal height "
    "spanning the box width, words by their share of the line; they are not measured."
)


def _n(v: float) -> str:
    return f"{v:.1f}".removesuffix(".0")


def _geometry(el: ET.Element, box: FBox) -> None:
    x0, y0, x1, y1 = box
    el.set("HPOS", _n(x0))
    el.set("VPOS", _n(y0))
    el.set("WIDTH", _n(max(0.0, x1 - x0)))
    el.set("HEIGHT", _n(max(0.0, y1 - y0)))


def _union(boxes: list[FBox]) -> FBox:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def _tag_id(label: str) -> str:
    return "label_" + "".join(c if c.isalnum() else "_" for c in label)


def _text_block(parent: ET.Element, block_id: str, box: FBox, lines: list[Line], tag: str) -> ET.Element:
    tb = ET.SubElement(parent, "TextBlock", ID=block_id, TAGREFS=tag)
    _geometry(tb, box)
    for j, line in enumerate(lines):
        tl = ET.SubElement(tb, "TextLine", ID=f"{block_id}_l{j}")
        _geometry(tl, line.box)
        for k, word in enumerate(line.words):
            if k:
                sp = ET.SubElement(tl, "SP")
                _geometry(sp, (line.words[k - 1].box[2], line.box[1], word.box[0], line.box[3]))
                sp.attrib.pop("HEIGHT")
                sp.attrib.pop("VPOS")
            s = ET.SubElement(tl, "String", ID=f"{block_id}_l{j}_w{k}", CONTENT=word.text)
            _geometry(s, word.box)
    return tb


def _block(space: ET.Element, page: PageResult, block: Block, order: list[str]) -> None:
    """Append one block: TextBlock, Illustration (figures) or ComposedBlock (tables; figures with text)."""
    prefix = f"p{page.index + 1}_b{block.index}"
    boxes = block_boxes(block, page)
    box = _union(boxes)
    tag = _tag_id(block.label)
    text = block_text(block)
    lines = layout_lines(text, boxes)
    if block.label == "image":
        if not lines:
            ill = ET.SubElement(space, "Illustration", ID=prefix, TAGREFS=tag, TYPE="figure")
            _geometry(ill, box)
            order.append(prefix)
            return
        cb = ET.SubElement(space, "ComposedBlock", ID=prefix, TAGREFS=tag, TYPE="figure")
        _geometry(cb, box)
        ill = ET.SubElement(cb, "Illustration", ID=f"{prefix}_img", TAGREFS=tag, TYPE="figure")
        _geometry(ill, box)
        _text_block(cb, f"{prefix}_desc", box, lines, tag)
    elif block.table is not None:
        cb = ET.SubElement(space, "ComposedBlock", ID=prefix, TAGREFS=tag, TYPE="table")
        _geometry(cb, box)
        # One TextLine per table row, cells in order (cell boxes are not known).
        _text_block(cb, f"{prefix}_rows", box, lines, tag)
    else:
        _text_block(space, prefix, box, lines, tag)
    order.append(prefix)


def _page_dpi(result: DocResult) -> dict[int, float]:
    """Resolution of each converted PDF page as rendered (pixels per inch of the page); empty for images."""
    from deepocr_cli.inputs.discover import DocKind
    from deepocr_cli.inputs.render import open_document

    try:
        with open_document(result.source, password=result.password) as reader:
            if reader.kind is not DocKind.PDF:
                return {}
            out = {}
            for p in result.pages:
                if p.index < reader.page_count:
                    w_pt, _ = reader.page_size(p.index)
                    out[p.index] = round(p.width * 72.0 / w_pt, 1) if w_pt else 0.0
            return out
    except Exception as e:  # noqa: BLE001 - the resolution is informative; the file is still written
        log.debug("no page resolution for %s: %s", result.source, e)
        return {}


def _description(root: ET.Element, result: DocResult) -> None:
    desc = ET.SubElement(root, "Description")
    ET.SubElement(desc, "MeasurementUnit").text = "pixel"
    info = ET.SubElement(desc, "sourceImageInformation")
    ET.SubElement(info, "fileName").text = result.source_rel
    ET.SubElement(info, "documentIdentifier", documentIdentifierLocation="sha256").text = result.sha256
    proc = ET.SubElement(desc, "Processing", ID=_PROCESSING_ID)
    ET.SubElement(proc, "processingCategory").text = "contentGeneration"
    dpi = _page_dpi(result)
    sizes = "; ".join(
        f"page {p.index + 1}: {p.width}x{p.height} px" + (f" ({dpi[p.index]} dpi)" if p.index in dpi else "")
        for p in result.pages
    )
    ET.SubElement(proc, "processingStepDescription").text = (
        f"Layout and text by the DeepSeek-OCR model {result.model.get('id')} (revision "
        f"{result.model.get('revision') or 'default'}) through deepocr. Coordinates are pixels of each page "
        f"as rendered for the model: {sizes}."
    )
    ET.SubElement(proc, "processingStepDescription").text = ESTIMATE_NOTE
    ET.SubElement(proc, "processingStepSettings").text = json.dumps(result.settings, sort_keys=True, default=str)
    sw = ET.SubElement(proc, "processingSoftware")
    ET.SubElement(sw, "softwareCreator").text = "deepocr"
    ET.SubElement(sw, "softwareName").text = "deepocr"
    ET.SubElement(sw, "softwareVersion").text = __version__
    ET.SubElement(sw, "applicationDescription").text = (
        f"model {result.model.get('id')}, revision {result.model.get('revision') or 'default'}"
    )


def render_alto(result: DocResult, paths: OutputPaths) -> bytes:
    """Build ``NAME.alto.xml``: one ``Page`` per converted page, blocks in reading order.

    Text blocks become ``TextBlock`` with ``TextLine``/``String`` (estimated), figures ``Illustration``
    (in a ``ComposedBlock`` with a ``TextBlock`` when deep parsing described them), tables a ``ComposedBlock``
    of type table; every block is tagged with its layout label (``LayoutTag``), and ``ReadingOrder`` lists
    the blocks of each page. A failed page is an empty ``Page`` whose ``QUALITY_DETAIL`` says why.

    Args:
        result: the converted document.
        paths: the document's output paths (unused; part of the renderer signature).

    Returns:
        UTF-8 XML bytes.
    """
    del paths
    # Elements are built unqualified under a literal default-namespace declaration, which keeps the
    # serialisation free of prefixes.
    root = ET.Element("alto", {"xmlns": NS, f"{{{_XSI}}}schemaLocation": SCHEMA_LOCATION, "SCHEMAVERSION": "4.4"})
    _description(root, result)
    labels = sorted({b.label for p in result.pages if p.error is None for b in p.blocks})
    if labels:
        tags = ET.SubElement(root, "Tags")
        for label in labels:
            ET.SubElement(tags, "LayoutTag", ID=_tag_id(label), LABEL=label)
    reading = ET.Element("ReadingOrder")
    layout = ET.Element("Layout")
    for page in result.pages:
        pid = f"p{page.index + 1}"
        pg = ET.SubElement(layout, "Page", ID=pid, PHYSICAL_IMG_NR=str(page.index + 1), PROCESSINGREFS=_PROCESSING_ID)
        pg.set("WIDTH", str(page.width))
        pg.set("HEIGHT", str(page.height))
        if page.error is not None:
            pg.set("QUALITY_DETAIL", f"deepocr: failed at {page.error.stage}: {page.error.message}")
            continue
        if page.truncated:
            pg.set("QUALITY_DETAIL", "deepocr: truncated: generation stopped at the token limit")
        space = ET.SubElement(pg, "PrintSpace", HPOS="0", VPOS="0", WIDTH=str(page.width), HEIGHT=str(page.height))
        order: list[str] = []
        for block in page.blocks:
            _block(space, page, block, order)
        if order:
            group = ET.SubElement(reading, "OrderedGroup", ID=f"{pid}_order")
            for i, ref in enumerate(order):
                ET.SubElement(group, "ElementRef", ID=f"{pid}_ref{i}", REF=ref)
    if len(reading):
        root.append(reading)
    root.append(layout)
    ET.indent(root, space=" ")
    body = ET.tostring(root, encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n").encode("utf-8")
