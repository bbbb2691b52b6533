"""Tests for page rendering: exact sizes, colour handling, page ranges and every kind of bad input."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pymupdf
import pytest
from pdf_helpers import hand_pdf
from PIL import Image

from deepocr_cli.errors import InputError
from deepocr_cli.inputs.discover import DocKind, find_documents
from deepocr_cli.inputs.render import open_document, parse_page_ranges, to_rgb

RED = (255, 0, 0)
WHITE = (255, 255, 255)


def _make_pdf(
    path: Path, pages: int = 1, size: tuple[float, float] = (595, 842), rotate: int = 0, **save: object
) -> Path:
    doc = pymupdf.open()
    for i in range(pages):
        page = doc.new_page(width=size[0], height=size[1])
        page.draw_rect(
            pymupdf.Rect(0, 0, size[0] / 4, size[1] / 4), color=None, fill=(1, 0, 0)
        )  # top-left red
        page.insert_text((72, size[1] / 2), f"Page number {i + 1}", fontsize=14)
        if rotate:
            page.set_rotation(rotate)
    doc.save(path, **save)
    doc.close()
    return path


def _px(im: Image.Image, x: float, y: float) -> tuple[int, ...]:
    """Pixel at a fractional position."""
    return im.getpixel((int(x * (im.width - 1)), int(y * (im.height - 1))))  # type: ignore[return-value]


def _close(a: tuple[int, ...], b: tuple[int, ...], tol: int = 12) -> bool:
    return all(abs(int(x) - int(y)) <= tol for x, y in zip(a, b, strict=True))


# --- PDF rendering -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(1357, 1920), (1024, 1449), (333, 517), (1, 1)])
def test_pdf_renders_to_exact_size(tmp_path: Path, size: tuple[int, int]) -> None:
    with open_document(_make_pdf(tmp_path / "a.pdf")) as r:
        im = r.render(0, size)
    assert im.size == size and im.mode == "RGB"


def test_pdf_default_size_is_144_dpi_and_background_white(tmp_path: Path) -> None:
    with open_document(_make_pdf(tmp_path / "a.pdf")) as r:
        assert r.kind is DocKind.PDF and r.page_count == 1
        assert r.page_size(0) == (595.0, 842.0)
        im = r.render(0)
    assert im.size == (1190, 1684)
    assert _close(_px(im, 0.1, 0.1), RED) and _px(im, 0.9, 0.9) == WHITE


def test_pdf_max_pixels_caps_keeping_aspect(tmp_path: Path) -> None:
    with open_document(_make_pdf(tmp_path / "a.pdf")) as r:
        im = r.render(0, (2000, 4000), max_pixels=500_000)
    assert im.width * im.height <= 500_000
    assert abs(im.width / im.height - 0.5) < 0.01


def test_pdf_page_rotation_is_applied(tmp_path: Path) -> None:
    with open_document(_make_pdf(tmp_path / "r.pdf", rotate=90)) as r:
        w, h = r.page_size(0)
        assert (w, h) == (842.0, 595.0)
        im = r.render(0, (842, 595))
    # /Rotate 90 turns the page clockwise: the top-left red corner ends up top-right
    assert _close(_px(im, 0.9, 0.1), RED) and _px(im, 0.1, 0.1) == WHITE


def test_pdf_text_layer_and_page_object(tmp_path: Path) -> None:
    with open_document(_make_pdf(tmp_path / "t.pdf", pages=2)) as r:
        assert "Page number 2" in (r.page_text(1) or "")
        assert r.pdf_page(0).number == 0
        with pytest.raises(IndexError):
            r.render(2)


def test_owner_password_only_pdf_renders(tmp_path: Path) -> None:
    path = _make_pdf(
        tmp_path / "owner.pdf",
        encryption=pymupdf.PDF_ENCRYPT_AES_256,
        owner_pw="owner",
        user_pw="",
        permissions=pymupdf.PDF_PERM_ACCESSIBILITY,  # no printing, no copying
    )
    with open_document(path) as r:
        assert r.page_count == 1
        assert _close(_px(r.render(0, (200, 283)), 0.1, 0.1), RED)
        assert "Page number 1" in (r.page_text(0) or "")


def test_user_password_pdf_is_an_input_error(tmp_path: Path) -> None:
    path = _make_pdf(
        tmp_path / "locked.pdf", encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="o", user_pw="u"
    )
    with pytest.raises(InputError, match=r"^encrypted: needs a password \(--password, DEEPOCR_PDF_PASSWORD or --password-file\)$"):
        open_document(path)


def test_truncated_pdf(tmp_path: Path) -> None:
    data = _make_pdf(tmp_path / "full.pdf", pages=3).read_bytes()
    cut = tmp_path / "cut.pdf"
    cut.write_bytes(data[:200])  # header and the first objects only
    with pytest.raises(InputError, match="^corrupt or truncated PDF"):
        open_document(cut)


def test_half_truncated_pdf_is_repaired_as_far_as_possible(tmp_path: Path) -> None:
    data = _make_pdf(tmp_path / "full.pdf", pages=3).read_bytes()
    cut = tmp_path / "cut.pdf"
    cut.write_bytes(data[: len(data) // 2])  # MuPDF rebuilds the xref from the objects still there
    with open_document(cut) as r:
        assert "Page number 1" in (r.page_text(0) or "")
        assert r.render(0, (60, 85)).size == (60, 85)


def test_zero_page_pdf(tmp_path: Path) -> None:
    path = tmp_path / "empty_tree.pdf"
    path.write_bytes(hand_pdf([b"<</Type/Catalog/Pages 2 0 R>>", b"<</Type/Pages/Kids[]/Count 0>>"]))
    with pytest.raises(InputError, match="no pages"):
        open_document(path)


def test_pdf_without_any_readable_page(tmp_path: Path) -> None:
    path = tmp_path / "liar.pdf"  # the page tree claims two pages and holds none
    path.write_bytes(hand_pdf([b"<</Type/Catalog/Pages 2 0 R>>", b"<</Type/Pages/Kids[]/Count 2>>"]))
    with pytest.raises(InputError, match="no readable pages"):
        open_document(path)


def test_broken_page_raises_input_error_naming_it_and_others_still_render(tmp_path: Path) -> None:
    path = tmp_path / "broken.pdf"  # Count says 3, only page 1 exists
    path.write_bytes(
        hand_pdf(
            [
                b"<</Type/Catalog/Pages 2 0 R>>",
                b"<</Type/Pages/Kids[3 0 R]/Count 3>>",
                b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 100]>>",
            ]
        )
    )
    with open_document(path) as r:
        assert r.page_count == 3
        assert r.render(0, (40, 20)).size == (40, 20)
        with pytest.raises(InputError, match="^page 2: "):
            r.render(1, (40, 20))
        with pytest.raises(InputError, match="^page 3: "):
            r.page_text(2)


def test_render_failure_inside_mupdf_names_the_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("code=2: syntax error in content stream")

    with open_document(_make_pdf(tmp_path / "a.pdf", pages=2)) as r:
        monkeypatch.setattr(pymupdf.Page, "get_pixmap", explode)
        with pytest.raises(InputError, match="^page 2: cannot render: code=2"):
            r.render(1, (100, 100))


def test_pdf_deleted_after_open_still_renders(tmp_path: Path) -> None:
    # MuPDF keeps the file open, so a PDF removed mid-run finishes from the open handle.
    path = _make_pdf(tmp_path / "a.pdf", pages=2)
    with open_document(path) as r:
        path.unlink()
        assert r.render(1, (60, 85)).size == (60, 85)


def test_pdf_named_as_image_and_opened_by_path(tmp_path: Path) -> None:
    path = _make_pdf(tmp_path / "looks_like.png")
    with open_document(path) as r:
        assert r.kind is DocKind.PDF


# --- bad files of any kind ---------------------------------------------------------------------------------


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.pdf"
    path.write_bytes(b"")
    with pytest.raises(InputError, match="^empty file"):
        open_document(path)


def test_file_emptied_after_discovery(tmp_path: Path) -> None:
    path = _make_pdf(tmp_path / "a.pdf")
    (doc,), _ = find_documents([path])
    path.write_bytes(b"")
    with pytest.raises(InputError, match="^empty file"):
        open_document(doc)


def test_directory_named_pdf(tmp_path: Path) -> None:
    (tmp_path / "x.pdf").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        open_document(tmp_path / "x.pdf")


def test_vanished_before_open(tmp_path: Path) -> None:
    path = _make_pdf(tmp_path / "a.pdf")
    (doc,), _ = find_documents([path])
    path.unlink()
    with pytest.raises(InputError, match="vanished"):
        open_document(doc)


def test_unsupported_content(tmp_path: Path) -> None:
    path = tmp_path / "notes.pdf"
    path.write_text("not a document")
    with pytest.raises(InputError, match="not a PDF"):
        open_document(path)


def test_image_deleted_between_open_and_render(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    Image.new("RGB", (30, 20), RED).save(path)
    r = open_document(path)
    path.unlink()
    with pytest.raises(InputError, match="vanished"):
        r.render(0)


def test_truncated_image_fails_at_render(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    full = tmp_path / "full.jpg"
    Image.fromarray(rng.integers(0, 255, (200, 300, 3), dtype=np.uint8)).save(full, quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full.read_bytes()[:2000])
    with open_document(cut) as r, pytest.raises(InputError, match="cannot read image"):
        r.render(0)


def test_images_over_the_pixel_cap_are_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (100, 100)).save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's own guard (and its warning) is replaced by deepocr's cap
        with pytest.raises(InputError, match="decompression-bomb guard.*10,000 pixels exceeds the cap of 1,000"):
            open_document(path, max_image_pixels=1000)
        with open_document(path, max_image_pixels=10_000) as r:
            assert r.render(0, (10, 10)).size == (10, 10)


def test_a_scan_over_pillows_own_limit_is_decoded_reduced_without_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "a2-600dpi.jpg"  # 9,000 x 10,000 = 90 MP: over Pillow's 89.5 MP default bomb limit
    Image.new("L", (9000, 10000), 255).save(path, quality=50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with open_document(path) as r:
            assert r.page_size(0) == (9000.0, 10000.0)
            assert r.render(0, (900, 1000)).size == (900, 1000)


# --- image rendering ---------------------------------------------------------------------------------------


def test_transparent_png_flattened_on_white(tmp_path: Path) -> None:
    path = tmp_path / "alpha.png"
    im = Image.new("RGBA", (20, 10), (0, 0, 0, 0))
    im.paste((255, 0, 0, 255), (0, 0, 10, 10))
    im.save(path)
    with open_document(path) as r:
        out = r.render(0)
    assert out.mode == "RGB" and out.getpixel((15, 5)) == WHITE and out.getpixel((2, 5)) == RED


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    im = Image.new("RGB", (40, 20), (0, 0, 255))
    im.paste(RED, (0, 0, 20, 20))  # left half red as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "phone.jpg"
    im.save(path, exif=exif.tobytes(), quality=95)
    with open_document(path) as r:
        assert r.page_size(0) == (20.0, 40.0)
        out = r.render(0)
        assert r.render(0, (10, 20)).size == (10, 20)
    assert out.size == (20, 40)
    assert _close(_px(out, 0.5, 0.2), RED, 40) and _close(_px(out, 0.5, 0.8), (0, 0, 255), 40)


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (Image.new("CMYK", (8, 8), (0, 255, 255, 0)), RED),
        (Image.new("1", (8, 8), 1), WHITE),
        (Image.new("L", (8, 8), 77), (77, 77, 77)),
        (Image.new("LA", (8, 8), (0, 0)), WHITE),
        (Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16)), WHITE),
        (Image.fromarray(np.full((8, 8), 32896, dtype=np.uint16)), (128, 128, 128)),
    ],
    ids=["cmyk", "1bit", "gray", "gray-alpha", "16bit-max", "16bit-mid"],
)
def test_modes_convert_to_rgb(tmp_path: Path, image: Image.Image, expected: tuple[int, int, int]) -> None:
    path = tmp_path / "m.tif" if image.mode == "CMYK" else tmp_path / "m.png"
    image.save(path)
    with open_document(path) as r:
        out = r.render(0)
    assert out.mode == "RGB" and _close(out.getpixel((3, 3)), expected, 2)  # type: ignore[arg-type]


def test_palette_with_transparency_flattened(tmp_path: Path) -> None:
    im = Image.new("P", (10, 10), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.paste(1, (0, 0, 5, 10))
    im.info["transparency"] = 0  # palette index 0 (black) is transparent
    path = tmp_path / "pal.png"
    im.save(path, transparency=0)
    with open_document(path) as r:
        out = r.render(0)
    assert out.getpixel((2, 5)) == RED and out.getpixel((8, 5)) == WHITE


def test_to_rgb_float_image() -> None:
    out = to_rgb(Image.fromarray(np.full((4, 4), 0.5, dtype=np.float32)))
    assert out.mode == "RGB" and _close(out.getpixel((0, 0)), (127, 127, 127), 1)  # type: ignore[arg-type]


def test_multipage_tiff_pages(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (30 + 10 * i, 40), c) for i, c in enumerate([RED, (0, 255, 0), (0, 0, 255)])]
    path = tmp_path / "scan.tiff"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with open_document(path) as r:
        assert r.page_count == 3 and r.page_text(2) is None
        assert [r.page_size(i) for i in range(3)] == [(30.0, 40.0), (40.0, 40.0), (50.0, 40.0)]
        page2 = r.render(1)
        page3 = r.render(2, (25, 20))
    assert page2.size == (40, 40) and page2.getpixel((5, 5)) == (0, 255, 0)
    assert page3.size == (25, 20) and page3.getpixel((5, 5)) == (0, 0, 255)


def test_image_resize_and_pixel_cap(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    Image.new("RGB", (1600, 1200), RED).save(path)
    with open_document(path) as r:
        assert r.render(0, (400, 300)).size == (400, 300)  # JPEG draft path
        assert r.render(0, (400, 500)).size == (400, 500)  # exact even against the aspect
        capped = r.render(0, max_pixels=120_000)
    assert capped.width * capped.height <= 120_000 and abs(capped.width / capped.height - 4 / 3) < 0.02


# --- memory and page ranges --------------------------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_long_pdf_streams_in_bounded_memory(tmp_path: Path) -> None:
    path = _make_pdf(tmp_path / "long.pdf", pages=300)
    with open_document(path) as r:
        r.render(0, (600, 848))
        base = _rss_bytes()
        for i in range(r.page_count):
            im = r.render(i, (600, 848))
        assert "Page number 300" in (r.page_text(299) or "")
    del im
    # 300 pages held would be 300 x 1.5 MB = 450 MB; streaming stays near the baseline.
    assert _rss_bytes() - base < 64 * 2**20


@pytest.mark.parametrize(
    ("spec", "count", "expected"),
    [
        ("1-3,7", 10, [0, 1, 2, 6]),
        ("5-", 7, [4, 5, 6]),
        ("-2", 7, [0, 1]),
        ("3", 2, []),
        ("2-100", 4, [1, 2, 3]),
        (" 7, 1-2 ,2 ", 10, [0, 1, 6]),
    ],
)
def test_parse_page_ranges(spec: str, count: int, expected: list[int]) -> None:
    assert parse_page_ranges(spec, count) == expected


@pytest.mark.parametrize("spec", ["", "a", "1-2-3", "0", "3-1", "1,,2", "-", "1.5", "0-2"])
def test_parse_page_ranges_rejects_bad_syntax(spec: str) -> None:
    with pytest.raises(ValueError, match="page"):
        parse_page_ranges(spec, 10)
