"""A scanned PDF page read straight from its image: the gray page scan preparation judges, at a fraction of a
render's cost.

Most scanned PDFs draw one image over the whole page and nothing else. Such a page *is* its image, so its gray
raster can come from the image itself: a JPEG from its own decoder (PIL's draft mode decodes the luma only and at
1/2..1/8 scale), any other codec (Flate, JPEG 2000, CCITT, JBIG2) decoded by MuPDF at the image's own size;
instead of a MuPDF render, which decodes the image whole, converts it and resamples it: on a 100-dpi A4 JPEG scan
the decode costs about a seventh of the render. A blank page then costs little more than that decode, and a page's
verdict is judged on its image as an image file's is, without the render's resampling (which smooths the paper's
noise and so lets bleed-through stand out of it). Any other page (other content, an annotation, a /Rotate, a crop
box, a mask, an inverted or CMYK image) returns None and is rendered; an invisible text layer over the image (an
OCR tool's "searchable PDF") is no content.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pymupdf
from PIL import Image

from deepocr_cli.inputs.render import _MUPDF_LOCK, DocKind, DocumentReader

#: the whole content stream of a page that draws one image: optional q ... Q around "a 0 0 d e f cm /Name Do"
_ONE_IMAGE = re.compile(
    rb"\s*(?:q\s+)?([-+\d.]+)\s+([-+\d.]+)\s+([-+\d.]+)\s+([-+\d.]+)\s+([-+\d.]+)\s+([-+\d.]+)\s+cm\s+"
    rb"/([^\s/\[\]<>(){}%]+)\s+Do\s*(?:Q\s*)?"
)
#: how far (points) the drawn image may miss the page's edges
_FIT = 1.0
#: JPEG data is decoded by PIL (luma only, at reduced scale); the others by MuPDF at the image's own size ("": what
#: pymupdf reports for Flate and for no filter)
_CODECS = ("DCTDecode", "FlateDecode", "", "JPXDecode", "CCITTFaxDecode", "JBIG2Decode", "LZWDecode", "RunLengthDecode")


def _page_image(page) -> tuple[int, bytes | None] | None:  # noqa: ANN001 - a pymupdf.Page
    """The xref of the one image that is the whole page and, for a JPEG, its data; None for any other page."""
    if page.rotation or page.first_annot is not None or page.first_widget is not None:
        return None
    box = page.mediabox
    if box.x0 != 0 or box.y0 != 0 or page.cropbox != box:
        return None
    m = _ONE_IMAGE.fullmatch(page.read_contents())
    if m is not None:
        a, b, c, d, e, f = (float(x) for x in m.groups()[:6])
        name = m.group(7).decode("latin-1")
        found = [img for img in page.get_images(full=True) if img[7] == name]
    else:
        under = _under_invisible_text(page)
        if under is None:
            return None
        found, (a, b, c, d, e, f) = under
    if len(found) != 1 or b or c or a <= 0 or d <= 0 or abs(e) > _FIT or abs(f) > _FIT or abs(
            a - box.width) > _FIT or abs(d - box.height) > _FIT:
        return None
    xref, smask, _w, _h, _bpc, cs, _alt, _name, filt = found[0][:9]
    if smask or filt not in _CODECS or cs not in ("DeviceGray", "DeviceRGB", "ICCBased"):
        return None
    doc = page.parent
    if doc.xref_get_key(xref, "Decode")[0] != "null" or doc.xref_get_key(xref, "ImageMask")[1] == "true":
        return None
    return xref, doc.xref_stream_raw(xref) if filt == "DCTDecode" else None


def _under_invisible_text(page) -> tuple[list, tuple] | None:  # noqa: ANN001 - a pymupdf.Page
    """A page whose only visible content is one image, under an invisible text layer (an OCR tool's or a
    scanner's "searchable PDF": text in render mode 3 or fully transparent), no vector drawing: its image's
    get_images row and its transform; None for any other page."""
    images = page.get_images(full=True)
    if len(images) != 1 or page.get_cdrawings():
        return None
    if any(span["type"] != 3 and span["opacity"] > 0 for span in page.get_texttrace()):
        return None
    info = page.get_image_info()
    if len(info) != 1:
        return None
    return images, tuple(float(x) for x in info[0]["transform"])


def _decoded(doc, xref: int) -> Image.Image | None:  # noqa: ANN001 - a pymupdf.Document
    """An image of any other codec decoded by MuPDF at its own size, in gray (no resampling)."""
    pix = pymupdf.Pixmap(doc, xref)
    if pix.alpha or pix.n not in (1, 3):
        return None
    if pix.n != 1:
        pix = pymupdf.Pixmap(pymupdf.csGRAY, pix)
    rows = np.frombuffer(pix.samples, dtype=np.uint8).reshape(pix.height, pix.stride)[:, : pix.width]
    return Image.fromarray(np.ascontiguousarray(rows))


def _fit(im: Image.Image, long_side: int) -> Image.Image:
    """A scan larger than ``long_side`` (by over 10%) brought down to it, by area averaging: the scale the verdict's
    rules were set at, and its cost (a 300-dpi page left at the 1/2 scale JPEG decodes to would be analysed at 1,750
    px, 1.5x the time; synthetic 300-dpi blank scans were also called blank less often there)."""
    w, h = im.size
    if max(w, h) <= 1.1 * long_side:
        return im
    s = long_side / max(w, h)
    return im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BOX)


def scan_page_image(reader: DocumentReader, index: int, long_side: int) -> Image.Image | None:
    """The page as a gray image decoded straight from its one image (a JPEG at a reduced scale whose long side stays
    at least ``long_side``, any other codec at its own size), then brought down to ``long_side`` if larger (see
    ``_fit``; a smaller scan is left at its size, as an image file is); None when the page is not
    one upright image over the whole page (see the module's docstring), or when its data cannot be decoded (the
    render then says why).

    Raises:
        InputError: the page cannot be read, or its images exceed the decompression-bomb cap.
    """
    if reader.kind is not DocKind.PDF:
        return None
    with _MUPDF_LOCK:
        page = reader.pdf_page(index)  # loaded, damage and image-size checks done
        try:
            found = _page_image(page)
            if found is not None and found[1] is None:
                decoded = _decoded(page.parent, found[0])
                return None if decoded is None else _fit(decoded, long_side)
        except Exception:  # noqa: BLE001 - an odd page is simply rendered
            return None
    if found is None:
        return None
    data = found[1]
    try:
        im = Image.open(io.BytesIO(data))
        if im.format != "JPEG" or im.mode not in ("L", "RGB") or im.getexif().get(0x0112, 1) != 1:
            return None  # CMYK, or an EXIF orientation a PDF viewer may or may not apply: rendered
        w, h = im.size
        scale = max(long_side / max(w, h), 1 / 8)
        im.draft("L", (max(1, int(w * scale)), max(1, int(h * scale))))
        return _fit(im.convert("L"), long_side)
    except Exception:  # noqa: BLE001 - the render reports a broken image
        return None
