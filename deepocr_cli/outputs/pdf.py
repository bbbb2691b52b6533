"""Searchable PDF: the source pages untouched plus an invisible text layer placed from the grounding boxes.

For a PDF source every original object is kept as it was (content streams, fonts, images, page boxes,
rotation); each converted page only gains a font resource and two small content streams: ``q`` before the
original content and, after it, ``Q`` then the text in render mode 3 (invisible). For an image source each
image becomes one page at its resolution, embedded as it is where PDF allows (JPEG as DCT, PNG re-deflated
losslessly) and re-encoded losslessly otherwise.

The text uses one glyphless font per document (the technique OCRmyPDF and Tesseract use): a TrueType font
with a single empty glyph, every character a CID of its own mapped back to Unicode by a ToUnicode CMap. Any
script, CJK included, extracts correctly; the font program is about 600 bytes and only the character map
grows with the number of distinct characters.
"""

from __future__ import annotations

import io
import logging
from functools import cache
from pathlib import Path

import pymupdf
from PIL import Image, ImageOps
from pymupdf import mupdf

from deepocr_cli.errors import InputError
from deepocr_cli.inputs.discover import DocKind, sniff_kind
from deepocr_cli.inputs.pdffile import open_pdf_file
from deepocr_cli.inputs.render import to_rgb
from deepocr_cli.outputs.lines import char_em, page_lines
from deepocr_cli.outputs.paths import OutputPaths
from deepocr_cli.outputs.results import DocResult, PageResult

log = logging.getLogger(__name__)

#: Resolution assumed for an image without DPI metadata (the usual scanning resolution).
DEFAULT_IMAGE_DPI = 300
#: Resource name of the text-layer font on every page.
FONT_NAME = "DeepOCRText"
#: Baseline position inside a line box, from the top: the font's ascent over its ascent + descent.
_ASCENT, _DESCENT = 800, -200


@cache
def glyphless_font() -> bytes:
    """A TrueType font with one empty glyph (advance 500/1000 em), built once with fontTools."""
    from fontTools.fontBuilder import FontBuilder
    from fontTools.pens.ttGlyphPen import TTGlyphPen

    fb = FontBuilder(1000, isTTF=True)
    fb.setupGlyphOrder([".notdef", "blank"])
    fb.setupCharacterMap({})
    empty = TTGlyphPen(None).glyph()
    fb.setupGlyf({".notdef": empty, "blank": empty})
    fb.setupHorizontalMetrics({".notdef": (500, 0), "blank": (500, 0)})
    fb.setupHorizontalHeader(ascent=_ASCENT, descent=_DESCENT)
    fb.setupNameTable({"familyName": FONT_NAME, "styleName": "Regular"})
    fb.setupOS2(sTypoAscender=_ASCENT, sTypoDescender=_DESCENT, usWinAscent=_ASCENT, usWinDescent=-_DESCENT)
    fb.setupPost()
    buf = io.BytesIO()
    fb.save(buf)
    return buf.getvalue()


class _Font:
    """The document's text-layer font: CIDs handed out per character as content is written, objects at the end."""

    def __init__(self, doc: pymupdf.Document) -> None:
        self.doc = doc
        self.xref = doc.get_new_xref()
        doc.update_object(self.xref, "<<>>")
        self.cids: dict[str, int] = {}

    def encode(self, text: str) -> tuple[str, float]:
        """Hex string of ``text``'s CIDs and its advance in ems."""
        out = []
        for ch in text:
            cid = self.cids.setdefault(ch, len(self.cids) + 1)
            out.append(f"{cid:04X}")
        return "".join(out), sum(char_em(ch) for ch in text)

    def stream(self, data: bytes, extra: str = "") -> int:
        """A new stream object holding ``data``; returns its xref."""
        xref = self.doc.get_new_xref()
        self.doc.update_object(xref, f"<<{extra}>>")
        self.doc.update_stream(xref, data)
        return xref

    def finish(self) -> None:
        """Write the font objects; the widths and ToUnicode cover every character encoded."""
        doc, chars = self.doc, sorted(self.cids, key=self.cids.__getitem__)
        if not chars:  # no page got a layer: the placeholder stays an unreferenced empty dictionary
            return
        widths = " ".join(str(round(char_em(ch) * 1000)) for ch in chars)
        cidtogid = b"\x00\x01" * (len(chars) + 1)  # every CID draws glyph 1, the empty one
        file_xref = self.stream(glyphless_font())
        map_xref = self.stream(cidtogid)
        cmap_xref = self.stream(_to_unicode(chars))
        desc_xref = doc.get_new_xref()
        doc.update_object(
            desc_xref,
            f"<</Type/FontDescriptor/FontName/{FONT_NAME}/Flags 4/FontBBox[0 {_DESCENT} 1000 {_ASCENT}]"
            f"/ItalicAngle 0/Ascent {_ASCENT}/Descent {_DESCENT}/CapHeight 700/StemV 80/FontFile2 {file_xref} 0 R>>",
        )
        cid_xref = doc.get_new_xref()
        doc.update_object(
            cid_xref,
            f"<</Type/Font/Subtype/CIDFontType2/BaseFont/{FONT_NAME}"
            "/CIDSystemInfo<</Registry(Adobe)/Ordering(Identity)/Supplement 0>>"
            f"/FontDescriptor {desc_xref} 0 R/DW 500/W[1[{widths}]]/CIDToGIDMap {map_xref} 0 R>>",
        )
        doc.update_object(
            self.xref,
            f"<</Type/Font/Subtype/Type0/BaseFont/{FONT_NAME}/Encoding/Identity-H"
            f"/DescendantFonts[{cid_xref} 0 R]/ToUnicode {cmap_xref} 0 R>>",
        )


def _utf16_hex(ch: str) -> str:
    return ch.encode("utf-16-be").hex().upper()


def _to_unicode(chars: list[str]) -> bytes:
    """A ToUnicode CMap mapping CID i+1 to ``chars[i]`` (surrogate pairs for characters beyond the BMP)."""
    head = (
        "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n"
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n"
        "/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n"
        "1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n"
    )
    body = []
    for start in range(0, len(chars), 100):
        chunk = chars[start : start + 100]
        body.append(f"{len(chunk)} beginbfchar\n")
        body.extend(f"<{start + i + 1:04X}> <{_utf16_hex(ch)}>\n" for i, ch in enumerate(chunk))
        body.append("endbfchar\n")
    tail = "endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n"
    return (head + "".join(body) + tail).encode("ascii")


def _fmt(v: float) -> str:
    return f"{v:.4f}".rstrip("0").rstrip(".") or "0"


def _view_to_user(page: pymupdf.Page) -> pymupdf.Matrix:
    """Upright page as rendered (y down, origin at the crop box's visible top left) -> PDF user space.

    The inverse of MuPDF's own page transform, which is what rendering uses; it accounts for the crop box and
    /Rotate together (``Page.transformation_matrix`` drops the crop box offset on rotated pages).
    """
    mediabox, ctm = mupdf.FzRect(), mupdf.FzMatrix()
    mupdf.pdf_page_transform(mupdf.pdf_page_from_fz_page(page.this), mediabox, ctm)
    return ~pymupdf.Matrix(ctm.a, ctm.b, ctm.c, ctm.d, ctm.e, ctm.f)


def _layer_stream(page: pymupdf.Page, result: PageResult, font: _Font) -> bytes:
    """Content operators drawing the page's lines invisibly where the grounding boxes put them."""
    rect = page.rect
    sx = rect.width / result.width if result.width else 1.0
    sy = rect.height / result.height if result.height else 1.0
    to_user = _view_to_user(page)
    ops = [f"BT 3 Tr /{FONT_NAME} 1 Tf"]
    for _, lines in page_lines(result):
        for line in lines:
            x0, y0, x1, y1 = line.box
            x0, x1, y0, y1 = x0 * sx + rect.x0, x1 * sx + rect.x0, y0 * sy + rect.y0, y1 * sy + rect.y0
            size = y1 - y0
            hexed, ems = font.encode(line.text)
            if not hexed or size <= 0 or ems <= 0:
                continue
            stretch = (x1 - x0) / (ems * size)
            baseline = y0 + size * _ASCENT / (_ASCENT - _DESCENT)
            m = pymupdf.Matrix(stretch * size, 0, 0, -size, x0, baseline) * to_user
            ops.append(" ".join(_fmt(v) for v in (m.a, m.b, m.c, m.d, m.e, m.f)) + f" Tm <{hexed}> Tj")
    ops.append("ET")
    return ("\n".join(ops) + "\n").encode("ascii")


def _inline(doc: pymupdf.Document, holder: int, key: str) -> None:
    """Replace an indirect dictionary under ``key`` by an inline copy, so changing it leaves shared objects alone."""
    kind, value = doc.xref_get_key(holder, key)
    if kind == "xref":
        doc.xref_set_key(holder, key, doc.xref_object(int(value.split()[0]), compressed=True))


def _add_font_resource(doc: pymupdf.Document, page_xref: int, font_xref: int) -> None:
    """Name the text-layer font in the page's own resources; every original object stays as it was."""
    if doc.xref_get_key(page_xref, "Resources")[0] == "null":  # inherited from the page tree
        parent, value = doc.xref_get_key(page_xref, "Parent"), "<<>>"
        while parent[0] == "xref":
            pxref = int(parent[1].split()[0])
            kind, found = doc.xref_get_key(pxref, "Resources")
            if kind != "null":
                value = found
                break
            parent = doc.xref_get_key(pxref, "Parent")
        doc.xref_set_key(page_xref, "Resources", value)
    _inline(doc, page_xref, "Resources")
    _inline(doc, page_xref, "Resources/Font")
    doc.xref_set_key(page_xref, f"Resources/Font/{FONT_NAME}", f"{font_xref} 0 R")


def _add_layer(doc: pymupdf.Document, page: pymupdf.Page, result: PageResult, font: _Font) -> None:
    data = _layer_stream(page, result, font)
    if data.count(b" Tj") == 0:
        return
    _add_font_resource(doc, page.xref, font.xref)
    kind, value = doc.xref_get_key(page.xref, "Contents")
    if kind == "xref" and not doc.xref_is_stream(int(value.split()[0])):
        # /Contents may point at an array object rather than a stream: splice in its items.
        kind, value = "array", doc.xref_object(int(value.split()[0]), compressed=True)
    inner = value.strip()[1:-1].strip() if kind == "array" else ""
    existing = [value] if kind == "xref" else [inner] if inner else []
    first = font.stream(b"q\n")
    last = font.stream(b"Q\n" + data)
    refs = " ".join([f"{first} 0 R", *existing, f"{last} 0 R"])
    doc.xref_set_key(page.xref, "Contents", f"[{refs}]")


def _image_dpi(info: dict) -> tuple[float, float]:
    dpi = info.get("dpi")
    try:
        x, y = (float(v) for v in dpi)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return DEFAULT_IMAGE_DPI, DEFAULT_IMAGE_DPI
    return (x if x >= 10 else DEFAULT_IMAGE_DPI), (y if y >= 10 else DEFAULT_IMAGE_DPI)


def _image_document(path: Path) -> pymupdf.Document:
    """One page per image frame at its resolution; JPEG and PNG bytes embedded as they are."""
    out = pymupdf.open()
    try:
        raw = path.read_bytes()
        with Image.open(io.BytesIO(raw)) as im:
            frames = getattr(im, "n_frames", 1) if im.format == "TIFF" else 1
            for i in range(frames):
                im.seek(i)
                xdpi, ydpi = _image_dpi(im.info)
                orientation = im.getexif().get(0x0112, 1)
                upright = ImageOps.exif_transpose(im) if orientation != 1 else im
                w, h = upright.size
                page = out.new_page(width=w * 72.0 / xdpi, height=h * 72.0 / ydpi)
                if frames == 1 and orientation == 1 and im.format in ("JPEG", "PNG"):
                    page.insert_image(page.rect, stream=raw)
                else:  # a TIFF frame, WebP, BMP or an EXIF-rotated image: lossless PNG of the upright pixels
                    buf = io.BytesIO()
                    (upright if upright.mode in ("1", "L", "RGB", "RGBA") else to_rgb(upright)).save(buf, "PNG")
                    page.insert_image(page.rect, stream=buf.getvalue())
    except (OSError, ValueError) as e:
        out.close()
        raise InputError(f"cannot read image for the PDF output: {e}") from e
    return out


def render_pdf(result: DocResult, paths: OutputPaths) -> bytes:
    """Build ``NAME.ocr.pdf``: the source's pages with an invisible text layer on every converted page.

    Pages that failed get no text layer; pages outside ``--pages`` are kept without one.

    Args:
        result: the converted document (its ``source`` is read again).
        paths: the document's output paths (unused; part of the renderer signature).

    Returns:
        The PDF file's bytes.

    Raises:
        InputError: the source cannot be read again, or has fewer pages than were converted.
    """
    del paths
    try:
        kind = sniff_kind(result.source)
    except OSError as e:  # the source was read for the conversion; now it is gone or unreadable
        raise InputError(f"cannot reopen the source for the PDF output: {e.strerror or e}") from e
    if kind is DocKind.PDF:
        try:
            doc = open_pdf_file(result.source)  # a non-UTF-8 name or junk before %PDF- too
        except Exception as e:  # MuPDF raises plain exceptions for unreadable files
            raise InputError(f"cannot reopen the source for the PDF output: {e}") from e
        if doc.needs_pass:
            doc.authenticate(result.password or "")
    elif kind is DocKind.IMAGE:
        doc = _image_document(result.source)
    else:
        raise InputError("source is neither a PDF nor a supported image any more")
    try:
        font = _Font(doc)
        for page_result in result.pages:
            if page_result.error is not None:
                continue
            if page_result.index >= doc.page_count:
                raise InputError(f"source has {doc.page_count} page(s), page {page_result.index + 1} was converted")
            _add_layer(doc, doc[page_result.index], page_result, font)
        font.finish()
        # No garbage collection and no recompression: the original objects are written as they were.
        return doc.tobytes(garbage=0, deflate=False, clean=False)
    finally:
        doc.close()
