"""Tests for deepocr_cli.model.image_processing: pixel-exact agreement with the official preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from deepocr_cli.errors import InputError
from deepocr_cli.model.image_processing import PAD_VALUE, PreparedImage, prepare_image
from deepocr_cli.planning.modes import MODE_SPECS, Mode, image_embeddings

# --- the official steps, written with plain PIL/torch calls as facts §3 describes them -----------------


def _official_to_tensor(image: Image.Image) -> torch.Tensor:
    """ToTensor (uint8 HWC -> float CHW / 255) then Normalize(mean 0.5, std 0.5), as torchvision does it."""
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous().to(torch.float32).div(255)
    mean = torch.tensor([0.5, 0.5, 0.5]).view(3, 1, 1)
    std = torch.tensor([0.5, 0.5, 0.5]).view(3, 1, 1)
    return x.sub_(mean).div_(std)


def _official(
    image: Image.Image, mode: Mode, grid: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Global view and tiles the HF remote `infer` builds (grid supplied: tile choice belongs to modes.py)."""
    image = ImageOps.exif_transpose(image).convert("RGB")
    spec = MODE_SPECS[mode]
    gray = tuple(int(x * 255) for x in (0.5, 0.5, 0.5))
    tiles = None
    if spec.crop_mode:
        global_view = ImageOps.pad(image, (spec.base_size, spec.base_size), color=gray)
        nw, nh = grid
        if nw * nh > 1:
            resized = image.resize((spec.image_size * nw, spec.image_size * nh))
            crops = []
            for i in range(nw * nh):
                col, row = i % nw, i // nw
                box = (col * 640, row * 640, (col + 1) * 640, (row + 1) * 640)
                crops.append(_official_to_tensor(resized.crop(box)))
            tiles = torch.stack(crops)
    else:
        if spec.image_size <= 640:
            image = image.resize((spec.image_size, spec.image_size))
        global_view = ImageOps.pad(image, (spec.image_size, spec.image_size), color=gray)
    return _official_to_tensor(global_view), tiles


def _noise_page(width: int, height: int, seed: int = 0) -> Image.Image:
    """A page of random pixels over a gradient: every resampling difference shows up."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    pixels = ((noise.astype(np.float32) + ramp) / 2).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


SIZES = [
    (1191, 1684),
    (1684, 1191),
    (600, 800),
    (640, 640),
    (500, 300),
    (1000, 1000),
    (800, 3000),
    (1023, 1025),
]


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
@pytest.mark.parametrize("mode", list(Mode))
def test_prepare_image_matches_official_pixels_exactly(mode: Mode, size: tuple[int, int]) -> None:
    image = _noise_page(*size)
    prepared = prepare_image(image, mode)
    want_global, want_tiles = _official(image, mode, prepared.grid)
    assert prepared.global_view.dtype == torch.float32
    assert torch.equal(prepared.global_view, want_global)
    if want_tiles is None:
        assert prepared.tiles is None
    else:
        assert prepared.tiles is not None
        assert torch.equal(prepared.tiles, want_tiles)


@pytest.mark.parametrize(
    ("size", "grid"),
    [
        ((1191, 1684), (2, 3)),
        ((1684, 1191), (3, 2)),
        ((600, 800), (2, 3)),
        ((640, 640), (1, 1)),
        ((1920, 1080), (2, 1)),
    ],
)
def test_gundam_grid_and_counts_follow_the_mode_table(size: tuple[int, int], grid: tuple[int, int]) -> None:
    prepared = prepare_image(Image.new("RGB", size, "white"), Mode.GUNDAM)
    assert prepared.grid == grid
    assert prepared.num_embeddings == image_embeddings(Mode.GUNDAM, grid)
    assert prepared.global_view.shape == (3, 1024, 1024)
    if grid == (1, 1):
        assert prepared.tiles is None
    else:
        assert prepared.tiles is not None
        assert prepared.tiles.shape == (grid[0] * grid[1], 3, 640, 640)


@pytest.mark.parametrize("mode", [Mode.TINY, Mode.SMALL, Mode.BASE, Mode.LARGE])
def test_untiled_modes_give_one_view_of_the_mode_side(mode: Mode) -> None:
    prepared = prepare_image(_noise_page(1191, 1684), mode)
    side = MODE_SPECS[mode].base_size
    assert prepared == PreparedImage(mode, (1, 1), prepared.global_view, None, image_embeddings(mode))
    assert prepared.global_view.shape == (3, side, side)
    assert prepared.global_view.min() >= -1.0 and prepared.global_view.max() <= 1.0


def test_gundam_tiles_are_row_major() -> None:
    # The page is exactly the 2x3 tile canvas, so the stretch resize is a no-op and tile k keeps colour k.
    page = Image.new("RGB", (1280, 1920))
    colours = [(10 * k, 255 - 10 * k, 40) for k in range(6)]
    for k, colour in enumerate(colours):
        col, row = k % 2, k // 2
        page.paste(colour, (col * 640, row * 640, (col + 1) * 640, (row + 1) * 640))
    prepared = prepare_image(page, Mode.GUNDAM)
    assert prepared.grid == (2, 3)
    assert prepared.tiles is not None
    for k, colour in enumerate(colours):
        expected = (torch.tensor(colour, dtype=torch.float32) / 255 - 0.5) / 0.5
        assert torch.allclose(prepared.tiles[k, :, 320, 320], expected)


def test_padding_is_gray_127_and_centred() -> None:
    # A 2:1 white page in Base mode: 1024x512 content centred vertically, 256 gray rows above and below.
    prepared = prepare_image(Image.new("RGB", (2000, 1000), "white"), Mode.BASE)
    view = prepared.global_view
    assert pytest.approx((127 / 255 - 0.5) / 0.5) == PAD_VALUE
    assert torch.all(view[:, :256] == PAD_VALUE)
    assert torch.all(view[:, 768:] == PAD_VALUE)
    assert torch.all(view[:, 256:768] == 1.0)


def test_small_pages_are_upscaled_into_the_padded_global_view() -> None:
    prepared = prepare_image(Image.new("RGB", (100, 50), "black"), Mode.GUNDAM)
    assert prepared.tiles is None
    assert torch.all(prepared.global_view[:, 256:768] == -1.0)  # black content fills the full width


def test_tiny_and_small_stretch_instead_of_padding() -> None:
    prepared = prepare_image(Image.new("RGB", (2000, 500), "black"), Mode.TINY)
    assert torch.all(prepared.global_view == -1.0)  # no gray band anywhere


def test_exif_orientation_is_applied() -> None:
    page = _noise_page(300, 700)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: viewers turn it 90 degrees clockwise
    stored = page.copy()
    stored.info["exif"] = exif.tobytes()
    stored.getexif()[0x0112] = 6
    upright = ImageOps.exif_transpose(stored)
    assert upright.size == (700, 300)
    got = prepare_image(stored, Mode.BASE)
    want = prepare_image(upright, Mode.BASE)
    assert torch.equal(got.global_view, want.global_view)


def test_transparent_pixels_become_white() -> None:
    page = Image.new("RGBA", (64, 64), (0, 0, 0, 0))  # fully transparent black
    page.paste((0, 0, 0, 255), (0, 0, 32, 64))  # opaque black left half
    view = prepare_image(page, Mode.SMALL).global_view
    assert torch.all(view[:, :, -100:] == 1.0)
    assert torch.all(view[:, :, :100] == -1.0)


def test_palette_transparency_becomes_white() -> None:
    page = Image.new("P", (40, 40), 0)
    page.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
    page.info["transparency"] = 0
    assert torch.all(prepare_image(page, Mode.TINY).global_view == 1.0)


@pytest.mark.parametrize("pil_mode", ["L", "1", "CMYK", "P", "LA", "I", "F"])
def test_any_pil_mode_is_accepted(pil_mode: str) -> None:
    page = _noise_page(200, 300).convert(pil_mode)
    prepared = prepare_image(page, Mode.TINY)
    assert prepared.global_view.shape == (3, 512, 512)
    assert torch.isfinite(prepared.global_view).all()


def test_16_bit_gray_is_scaled_not_clipped() -> None:
    levels = np.full((32, 32), 32768, dtype=np.uint16)  # mid gray in 16 bits
    page = Image.fromarray(levels)
    assert page.mode == "I;16"
    view = prepare_image(page, Mode.TINY).global_view
    mid_gray = (torch.tensor(128.0) / 255 - 0.5) / 0.5  # float32, as the pipeline computes it
    assert torch.all(view == mid_gray)


def test_unconvertible_image_raises_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    page = Image.new("CMYK", (8, 8))

    def refuse(self: Image.Image, *args: object, **kwargs: object) -> Image.Image:
        raise ValueError("conversion not supported")

    monkeypatch.setattr(Image.Image, "convert", refuse)
    with pytest.raises(InputError, match="CMYK"):
        prepare_image(page, Mode.TINY)
