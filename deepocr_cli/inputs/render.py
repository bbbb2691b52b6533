"""Open one document and render its pages, one at a time, to RGB images of an exact pixel size."""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pymupdf
from PIL import Image, ImageOps, UnidentifiedImageError

from deepocr_cli.boundary import enter
from deepocr_cli.errors import InputError
from deepocr_cli.inputs.discover import DocKind, SourceDoc, sniff_kind
from deepocr_cli.inputs.imaging import cap_size, check_pixel_cap, os_reason, to_rgb
from deepocr_cli.inputs.pdffile import mupdf_messages, open_pdf_file, page_damage

log = logging.getLogger(__name__)

#: Default cap on rendered pixels (4000 x 4000): far above any mode's need, far below an OOM.
DEFAULT_MAX_PIXELS = 16_000_000
#: Largest image (width x height) deepocr decodes: an A1 sheet scanned at 600 dpi is ~280 MP. Big scans are
#: decoded reduced (JPEG draft mode, then a reducing resize) to the size the chosen mode needs; images over the cap
#: are refused with a per-file error (``--max-image-pixels`` changes it).
DEFAULT_MAX_IMAGE_PIXELS = 300_000_000
#: Zoom used when a PDF page is rendered without a target size: 144 dpi, as the official runner renders.
DEFAULT_PDF_ZOOM = 2.0

# MuPDF keeps global state (the resource store, warnings) and PyMuPDF is not thread-safe, while the pipeline
# renders in background threads; every MuPDF call in this module holds this lock.
_MUPDF_LOCK = threading.RLock()

# deepocr applies its own cap (DEFAULT_MAX_IMAGE_PIXELS, checked before any decode) in place of Pillow's ~89 MP
# decompression-bomb guard, which refuses ordinary 600-dpi scans and warns on stderr below that.
Image.MAX_IMAGE_PIXELS = None
class DocumentReader:
    """An open document whose pages are rendered one at a time. Use as a context manager.

    Created by :func:`open_document`. Nothing but the file handle (PDF) or the file path (image) is held between
    calls, so memory stays bounded whatever the page count. One reader is for one thread at a time.

    Attributes:
        path: the file.
        kind: PDF or image.
        page_count: number of pages (frames of a multi-page TIFF; 1 for other images).
    """

    def __init__(
        self,
        path: Path,
        kind: DocKind,
        page_count: int,
        pdf: Any = None,
        sizes: list[tuple[int, int]] | None = None,
        warnings: list[str] | None = None,
        max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    ) -> None:
        self.path = path
        self.kind = kind
        self.page_count = page_count
        #: Document-level problems found while opening (MuPDF repairs of a damaged PDF).
        self.warnings: list[str] = list(warnings or [])
        self.max_image_pixels = max_image_pixels
        self._pdf = pdf  # pymupdf.Document for PDFs
        self._sizes = sizes or []  # image frames' upright sizes (after EXIF orientation)
        self._page_warnings: dict[int, list[str]] = {}

    def __enter__(self) -> DocumentReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the file; idempotent."""
        if self._pdf is not None:
            with _MUPDF_LOCK:
                self._pdf.close()
            self._pdf = None

    def page_warnings(self, index: int) -> list[str]:
        """MuPDF's messages about this page since the last call (damaged objects it worked around)."""
        return self._page_warnings.pop(index, [])

    def _note(self, index: int) -> None:
        """File MuPDF's pending messages under page ``index`` (call with the MuPDF lock held)."""
        msgs = mupdf_messages()
        if msgs:
            seen = self._page_warnings.setdefault(index, [])
            seen.extend(f"MuPDF: {m}" for m in msgs if f"MuPDF: {m}" not in seen)

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.page_count:
            raise IndexError(f"page index {index} out of range for {self.page_count} page(s)")

    def _load_page(self, index: int) -> Any:
        self._check_index(index)
        if self._pdf is None:
            raise ValueError(f"{self.path} is closed")
        mupdf_messages()  # drop stale messages: what follows is this page's
        try:
            page = self._pdf.load_page(index)
        except Exception as e:  # MuPDF raises plain RuntimeError/ValueError subclasses for broken objects
            raise InputError(f"page {index + 1}: cannot read page: {e}") from e
        finally:
            self._note(index)
        damage = page_damage(self._pdf, page)
        if damage:
            raise InputError(f"page {index + 1}: {damage} (damaged PDF); it would render blank")
        return page

    def page_size(self, index: int) -> tuple[float, float]:
        """Size of a page: PDF points after the page's rotation, or image pixels after EXIF orientation."""
        enter("page_size", self.path)
        if self.kind is DocKind.PDF:
            with _MUPDF_LOCK:
                rect = self._load_page(index).rect
            return float(rect.width), float(rect.height)
        self._check_index(index)
        w, h = self._sizes[index]
        return float(w), float(h)

    def page_text(self, index: int) -> str | None:
        """The text layer of a PDF page (empty string when it has none), ``None`` for images."""
        if self.kind is not DocKind.PDF:
            self._check_index(index)
            return None
        with _MUPDF_LOCK:
            page = self._load_page(index)
            try:
                return page.get_text()
            except Exception as e:
                raise InputError(f"page {index + 1}: cannot extract text: {e}") from e

    def pdf_page(self, index: int) -> Any:
        """The ``pymupdf.Page`` for text-layer analysis (PDF only; not thread-safe, use it right away)."""
        if self.kind is not DocKind.PDF:
            raise TypeError(f"{self.path} is an image, not a PDF")
        with _MUPDF_LOCK:
            page = self._load_page(index)
            self._check_embedded_images(page, index)  # the estimator may render it
            return page

    def render(
        self, index: int, size: tuple[int, int] | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> Image.Image:
        """Render one page to RGB.

        Args:
            index: 0-based page index.
            size: exact (width, height) in pixels; PDF pages are rasterised at the zoom that gives it (no fixed
                DPI). ``None``: PDFs at 144 dpi, images at their own size.
            max_pixels: cap on width*height; a larger size is shrunk keeping its aspect.

        Returns:
            An RGB image, transparency flattened on white.

        Raises:
            InputError: the page (or the file) cannot be read; the message names the page.
            IndexError: ``index`` is out of range.
        """
        enter("render", self.path)
        if self.kind is DocKind.PDF:
            return self._render_pdf(index, size, max_pixels)
        return self._render_image(index, size, max_pixels)

    def render_gray(self, index: int, long_side: int) -> np.ndarray:
        """A PDF page in gray levels with its long side at ``long_side`` px (uint8 [H, W]): the cheap render scan
        preparation reads (no RGB, no resize).

        Raises:
            InputError: the page cannot be rendered.
            TypeError: the document is an image.
        """
        if self.kind is not DocKind.PDF:
            raise TypeError(f"{self.path} is an image, not a PDF")
        enter("render", self.path)
        with _MUPDF_LOCK:
            page = self._load_page(index)
            rect = page.rect
            if rect.width <= 0 or rect.height <= 0:
                raise InputError(f"page {index + 1}: empty page box {tuple(rect)}")
            self._check_embedded_images(page, index)  # a blank verdict must not decode a bomb either
            zoom = long_side / max(rect.width, rect.height)
            try:
                pix = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), colorspace=pymupdf.csGRAY, alpha=False)
            except Exception as e:
                raise InputError(f"page {index + 1}: cannot render: {e}") from e
            gray = np.frombuffer(pix.samples, dtype=np.uint8).reshape(pix.height, pix.stride)[:, : pix.width].copy()
        return gray

    def _render_pdf(self, index: int, size: tuple[int, int] | None, max_pixels: int) -> Image.Image:
        with _MUPDF_LOCK:
            page = self._load_page(index)
            rect = page.rect  # after /Rotate, so (w, h) is the upright page
            if rect.width <= 0 or rect.height <= 0:
                raise InputError(f"page {index + 1}: empty page box {tuple(rect)}")
            if size is None:
                size = (round(rect.width * DEFAULT_PDF_ZOOM), round(rect.height * DEFAULT_PDF_ZOOM))
            w, h = cap_size(*size, max_pixels)
            self._check_embedded_images(page, index)
            matrix = pymupdf.Matrix(w / rect.width, h / rect.height)
            try:
                # alpha=False renders on an opaque white background, so transparency is flattened on white.
                pix = page.get_pixmap(matrix=matrix, alpha=False, colorspace=pymupdf.csRGB)
            except Exception as e:
                raise InputError(f"page {index + 1}: cannot render: {e}") from e
            finally:
                self._note(index)
            im = Image.frombytes("RGB", (pix.width, pix.height), pix.samples)
            del pix
        if im.size != (w, h):  # MuPDF rounds the pixel box outward; at worst one pixel off
            im = im.resize((w, h), Image.Resampling.BICUBIC)
        return im

    def _check_embedded_images(self, page: Any, index: int) -> None:
        """Refuse a page whose images declare more pixels than the cap: MuPDF decodes an image whole before
        scaling it, so a 1 MB PDF declaring a 30,000 x 30,000 image costs gigabytes and seconds per page."""
        if not self.max_image_pixels:
            return
        try:
            images = page.get_images(full=False)
        except Exception:  # noqa: BLE001 - a broken resource dictionary shows up when rendering
            return
        for img in images:
            w, h = int(img[2]), int(img[3])
            if w * h > self.max_image_pixels:
                raise InputError(f"page {index + 1}: embedded image too large (decompression-bomb guard): "
                                 f"{w}x{h} = {w * h:,} pixels exceeds the cap of {self.max_image_pixels:,} "
                                 "(--max-image-pixels)")

    def _render_image(self, index: int, size: tuple[int, int] | None, max_pixels: int) -> Image.Image:
        self._check_index(index)
        where = f"page {index + 1}: " if self.page_count > 1 else ""
        try:
            with Image.open(self.path) as im:
                if index:
                    im.seek(index)
                check_pixel_cap(*im.size, self.max_image_pixels)  # the file may have been replaced since it was opened
                target = cap_size(*(size or self._sizes[index]), max_pixels)
                # JPEG can decode at 1/2..1/8 scale: much faster for big photos rendered small.
                swapped = self._sizes[index] != im.size and self._sizes[index] == im.size[::-1]
                im.draft(None, target[::-1] if swapped else target)
                im.load()
                out = to_rgb(ImageOps.exif_transpose(im))
        except Image.DecompressionBombError as e:
            raise InputError(f"{where}image too large (decompression-bomb guard): {e}") from e
        except InputError as e:
            raise InputError(f"{where}{e}") from e
        except OSError as e:  # FileNotFoundError, PermissionError, "image file is truncated", decoder errors
            raise InputError(f"{where}cannot read image: {os_reason(e)}") from e
        except (ValueError, EOFError) as e:
            raise InputError(f"{where}cannot decode image: {e}") from e
        if out.size != target:
            if target[0] * target[1] < out.width * out.height:  # shrinking: antialias, with a fast pre-reduce
                out = out.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
            else:  # enlarging: Lanczos buys nothing visible here and costs a third more time
                out = out.resize(target, Image.Resampling.BICUBIC)
        return out


def _open_pdf(path: Path, password: str | None = None) -> DocumentReader:
    with _MUPDF_LOCK:
        mupdf_messages()  # drop messages left by another document
        try:
            doc = open_pdf_file(path)  # filetype="pdf": the content decided the kind, not the extension
        except pymupdf.EmptyFileError as e:
            raise InputError("empty file (0 bytes)") from e
        except (OSError, pymupdf.FileNotFoundError) as e:  # pymupdf's own FileNotFoundError is no OSError
            raise InputError(os_reason(e if isinstance(e, OSError) else FileNotFoundError())) from e
        except Exception as e:  # MuPDF's message names the file, which the caller already reports
            log.debug("MuPDF cannot open %r: %s", path, e)
            raise InputError("corrupt or truncated PDF: MuPDF cannot open it") from e
        try:
            # the password is never put in a message or a log line, nor kept once the document is open
            if doc.needs_pass and not doc.authenticate(""):
                if not password:
                    raise InputError(
                        "encrypted: needs a password (--password, DEEPOCR_PDF_PASSWORD or --password-file)")
                if not doc.authenticate(password):
                    raise InputError("encrypted: wrong password")
            # Owner-password-only PDFs (printing/copying restrictions) open without a password and convert.
            enter("page_count", path)
            try:
                n = doc.page_count
            except Exception as e:  # PyMuPDF 2.0: "code=7: Invalid number of pages" for a lying /Count
                raise InputError(f"corrupt PDF: cannot count its pages: {' '.join(str(e).split())}") from e
            if n == 0:
                raise InputError("PDF has no pages")
            if n > doc.xref_length():  # every page is an object: a /Count above the object count is a lie
                raise InputError(f"corrupt PDF: its page tree claims {n:,} pages in a file of "
                                 f"{doc.xref_length():,} objects")
            first_error: Exception | None = None
            for i in range(n):  # usually stops at page 0; a corrupt file may have no loadable page at all
                try:
                    damage = page_damage(doc, doc.load_page(i))
                    if damage:
                        raise InputError(damage)
                    break
                except Exception as e:
                    first_error = first_error or e
                if i >= 64:  # a page tree of thousands of missing pages: no need to try them all
                    raise InputError(f"corrupt PDF, no readable page among the first {i + 1}: {first_error}")
            else:
                raise InputError(f"corrupt PDF, no readable pages: {first_error}")
        except BaseException:
            doc.close()
            raise
        warnings = mupdf_messages()
    if doc.is_encrypted:
        log.debug("%r: owner-password restrictions ignored for reading", path)
    if warnings:
        log.debug("%r: MuPDF: %s", path, "; ".join(warnings))
    return DocumentReader(path, DocKind.PDF, n, pdf=doc, warnings=[f"MuPDF: {w}" for w in warnings])


def _open_image(path: Path, max_image_pixels: int | None) -> DocumentReader:
    try:
        with Image.open(path) as im:
            # Only TIFF frames are pages; frames of animated PNG/WebP are an animation, not a document.
            enter("page_count", path)
            n = getattr(im, "n_frames", 1) if im.format == "TIFF" else 1
            sizes: list[tuple[int, int]] = []
            for i in range(n):
                if i:
                    im.seek(i)
                w, h = im.size
                check_pixel_cap(w, h, max_image_pixels)
                orientation = im.getexif().get(0x0112, 1)  # EXIF Orientation: 5..8 swap the axes
                sizes.append((h, w) if orientation in (5, 6, 7, 8) else (w, h))
    except Image.DecompressionBombError as e:
        raise InputError(f"image too large (decompression-bomb guard): {e}") from e
    except UnidentifiedImageError as e:
        raise InputError("unsupported or corrupt image") from e
    except OSError as e:
        raise InputError(os_reason(e)) from e
    except (ValueError, EOFError, SyntaxError) as e:
        raise InputError(f"corrupt image: {e}") from e
    return DocumentReader(path, DocKind.IMAGE, n, sizes=sizes, max_image_pixels=max_image_pixels)


def open_document(
    doc: SourceDoc | Path, password: str | None = None, max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS
) -> DocumentReader:
    """Open a PDF or image for rendering.

    Args:
        doc: a discovered document, or a path (its kind is then sniffed from its content).
        password: the user password of an encrypted PDF (ignored for other files).
        max_image_pixels: images larger than this (width x height) are refused before decoding; ``None``: no cap.

    Returns:
        A reader; close it (or use ``with``). ``reader.warnings`` lists MuPDF's repairs of a damaged PDF.

    Raises:
        InputError: with a one-line reason: empty, vanished or unreadable file, corrupt or truncated PDF with no
            readable page, 0-page PDF, PDF needing a user password (none or a wrong one given), image over the
            pixel cap, unsupported content.
    """
    path = doc.path if isinstance(doc, SourceDoc) else Path(doc)
    enter("open", path)
    try:
        # stat again even for a discovered document: it may have vanished or been emptied since discovery.
        st = path.stat()
        if path.is_dir():
            raise InputError("is a directory")
        if st.st_size == 0:
            raise InputError("empty file (0 bytes)")
        kind = doc.kind if isinstance(doc, SourceDoc) else sniff_kind(path)
    except OSError as e:
        raise InputError(os_reason(e)) from e
    if kind is None:
        raise InputError("not a PDF or a supported image (PNG, JPEG, TIFF, WebP, BMP)")
    if kind is DocKind.PDF:
        reader = _open_pdf(path, password)
        reader.max_image_pixels = max_image_pixels
        return reader
    return _open_image(path, max_image_pixels)


_RANGE_RE = re.compile(r"^\s*(\d*)\s*(-?)\s*(\d*)\s*$")


def parse_page_ranges(spec: str, page_count: int) -> list[int]:
    """Parse a 1-based page selection into sorted, unique 0-based indices.

    Args:
        spec: comma-separated pages and ranges: ``"1-3,7"``, ``"5-"`` (to the end), ``"-3"`` (from the start).
        page_count: pages in the document; pages beyond it are ignored.

    Returns:
        0-based indices, ascending, possibly empty when every page asked for is beyond ``page_count``.

    Raises:
        ValueError: bad syntax, page 0, or a descending range; the message quotes the bad part.
    """
    if not spec.strip():
        raise ValueError("empty page selection; use e.g. 1-3,7 or 5-")
    pages: set[int] = set()
    for part in spec.split(","):
        m = _RANGE_RE.match(part)
        if m is None or not (m.group(1) or m.group(3)) or (not m.group(2) and not m.group(1)):
            raise ValueError(f"bad page range {part.strip()!r} in {spec!r}; use e.g. 1-3,7 or 5-")
        first = int(m.group(1)) if m.group(1) else 1
        last = (int(m.group(3)) if m.group(3) else page_count) if m.group(2) else first
        if first < 1 or (m.group(3) and int(m.group(3)) < 1):
            raise ValueError(f"bad page range {part.strip()!r}: pages are numbered from 1")
        if m.group(3) and last < first:
            raise ValueError(f"bad page range {part.strip()!r}: it goes backwards")
        pages.update(range(first - 1, min(last, page_count)))
    return sorted(pages)
