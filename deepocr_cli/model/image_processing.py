"""Turn one PIL page image into the normalised global view and Gundam tiles the DeepEncoder expects (facts §3)."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps

from deepocr_cli.errors import InputError
from deepocr_cli.planning.modes import (
    DEFAULT_MAX_TILES,
    DEFAULT_MIN_TILES,
    GUNDAM_TILE,
    MODE_SPECS,
    Mode,
    image_embeddings,
    tile_grid,
)

log = logging.getLogger(__name__)

#: Normalisation mean and std of every channel (processor_config.json): maps [0, 1] to [-1, 1].
IMAGE_MEAN = 0.5
IMAGE_STD = 0.5
#: Padding colour: the reference computes int(255 * mean) per channel, i.e. 127, not 128.
PAD_GRAY = int(255 * IMAGE_MEAN)
#: Background that transparent pixels are composited onto (pages are white paper).
ALPHA_BACKGROUND = (255, 255, 255)
#: EXIF tag id of the orientation field.
_EXIF_ORIENTATION = 0x0112


def _build_lut() -> torch.Tensor:
    """Normalised value of each uint8 level, computed with the reference's exact float32 op sequence.

    ToTensor divides the uint8 tensor by 255 in float32, then Normalize subtracts the mean and divides
    by the std; doing those ops once on the 256 levels and gathering gives bit-identical pixels in one pass.
    """
    levels = torch.arange(256, dtype=torch.uint8).to(torch.float32)  # [256]
    return levels.div(255).sub(IMAGE_MEAN).div(IMAGE_STD)


_LUT: np.ndarray = _build_lut().numpy()  # [256] float32
#: The pad colour after normalisation (about -0.0039): used to pre-fill padded canvases.
PAD_VALUE: float = float(_LUT[PAD_GRAY])


@dataclass(frozen=True)
class PreparedImage:
    """Pixel tensors for one image in one mode, ready to stack with others of the same mode.

    Attributes:
        mode: the resolution mode the tensors were made for.
        grid: Gundam tile grid (nw, nh); (1, 1) when not tiled.
        global_view: float32 [3, S, S] in [-1, 1], S = MODE_SPECS[mode].base_size.
        tiles: float32 [nw*nh, 3, 640, 640] in row-major tile order, or None when not tiled.
        num_embeddings: vision embeddings (= `<image>` placeholders) this image yields.
    """

    mode: Mode
    grid: tuple[int, int]
    global_view: torch.Tensor
    tiles: torch.Tensor | None
    num_embeddings: int


def pinned(image: PreparedImage) -> PreparedImage:
    """The same image with its pixel tensors in page-locked host memory (CUDA builds with a device only).

    Preparation runs on CPU worker threads; pinned pixels then reach the GPU with ``non_blocking``
    copies that neither wait for the host nor make the host wait. Without a usable CUDA device the
    image is returned as is.
    """
    if not torch.cuda.is_available():
        return image
    tiles = None if image.tiles is None else image.tiles.pin_memory()
    return dataclasses.replace(image, global_view=image.global_view.pin_memory(), tiles=tiles)


def to_rgb(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation and convert to 8-bit RGB, compositing any transparency onto white.

    Args:
        image: a PIL image in any mode.

    Returns:
        An RGB image (the input itself when it is already an unrotated RGB image).

    Raises:
        InputError: the image mode cannot be converted to RGB.
    """
    if image.getexif().get(_EXIF_ORIENTATION, 1) != 1:
        image = ImageOps.exif_transpose(image)
    if image.mode == "RGB":
        return image
    try:
        if image.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
            # 16-bit scans: convert("RGB") would clip every level above 255 to white; scale instead.
            levels = np.asarray(image, dtype=np.uint16) >> 8  # [H, W]
            return Image.fromarray(levels.astype(np.uint8), mode="L").convert("RGB")
        has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
            image.mode in ("P", "L", "RGB") and "transparency" in image.info
        )
        if has_alpha:
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return image.convert("RGB")
    except (ValueError, OSError) as exc:
        raise InputError(f"cannot convert a {image.mode!r} image to RGB: {exc}") from exc


def to_tensor(image: Image.Image) -> torch.Tensor:
    """Normalise an RGB image to a float32 [3, H, W] tensor in [-1, 1] exactly as the reference does.

    Args:
        image: an RGB image.

    Returns:
        float32 [3, H, W], (x / 255 - 0.5) / 0.5.
    """
    pixels = np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)  # [3, H, W] uint8 view
    # A table gather is one pass over the pixels (about 5x faster than three elementwise ops).
    return torch.from_numpy(np.take(_LUT, pixels))  # [3, H, W] float32


def padded_view(image: Image.Image, side: int) -> torch.Tensor:
    """Normalised square view equal to ``ImageOps.pad(image, (side, side), BICUBIC, (127,) * 3)``.

    The aspect-preserving resize is the one ``ImageOps.contain`` makes (rounded long-to-short side,
    no resampling when the size already matches); the centred paste is done on a pre-filled tensor
    instead of a PIL canvas, which skips one full-size copy.

    Args:
        image: an RGB image.
        side: the square side.

    Returns:
        float32 [3, side, side].
    """
    width, height = image.size
    new_w, new_h = side, side
    aspect = width / height
    if aspect != 1.0:  # same float test as ImageOps.contain, so the rounding decisions agree
        if aspect > 1.0:
            new_h = round(height / width * side)
        else:
            new_w = round(width / height * side)
    canvas = torch.full((3, side, side), PAD_VALUE, dtype=torch.float32)  # [3, S, S]
    if min(new_w, new_h) == 0:
        return canvas  # a degenerate sliver: PIL pads an empty image, so the view is all gray
    resized = (
        image if (new_w, new_h) == image.size else image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    )
    x0 = round((side - new_w) * 0.5)
    y0 = round((side - new_h) * 0.5)
    canvas[:, y0 : y0 + new_h, x0 : x0 + new_w] = to_tensor(resized)
    return canvas


def stretched_view(image: Image.Image, width: int, height: int) -> torch.Tensor:
    """Normalised bicubic stretch-resize to exactly (width, height), as ``Image.resize`` makes it.

    Args:
        image: an RGB image.
        width: target width.
        height: target height.

    Returns:
        float32 [3, height, width].
    """
    resized = (
        image if image.size == (width, height) else image.resize((width, height), Image.Resampling.BICUBIC)
    )
    return to_tensor(resized)


def stretched_tiles(image: Image.Image, grid: tuple[int, int], tile: int = GUNDAM_TILE) -> torch.Tensor:
    """Stretch-resize to the (tile*nw, tile*nh) canvas and cut it into normalised row-major tiles.

    The tiles are gathered straight from the resized pixels (index = row * nw + col), so the canvas
    is never materialised as a float tensor.

    Args:
        image: an RGB image.
        grid: (nw, nh).
        tile: tile side.

    Returns:
        float32 [nw*nh, 3, tile, tile], contiguous.
    """
    nw, nh = grid
    size = (tile * nw, tile * nh)
    resized = image if image.size == size else image.resize(size, Image.Resampling.BICUBIC)
    pixels = np.asarray(resized, dtype=np.uint8).reshape(nh, tile, nw, tile, 3)  # [nh, t, nw, t, 3]
    pixels = pixels.transpose(0, 2, 4, 1, 3)  # [nh, nw, 3, t, t]
    return torch.from_numpy(np.take(_LUT, pixels)).view(nh * nw, 3, tile, tile)


def prepare_image(
    image: Image.Image,
    mode: Mode,
    min_tiles: int = DEFAULT_MIN_TILES,
    max_tiles: int = DEFAULT_MAX_TILES,
) -> PreparedImage:
    """Build the encoder inputs of one image in one mode, pixel for pixel as the official HF path does.

    Tiny/Small stretch the page to the square; Base/Large pad it (aspect kept, gray 127); Gundam pads
    the global view to 1024 and, when either side exceeds 640, stretch-resizes the page to the tile
    canvas (640*nw x 640*nh) and cuts it into row-major tiles.

    Args:
        image: the page, any PIL mode (EXIF orientation applied, alpha composited on white).
        mode: the resolution mode.
        min_tiles: fewest Gundam tiles of a tiled page.
        max_tiles: most Gundam tiles (the official vLLM runner uses 6, the HF path 9).

    Returns:
        The prepared tensors and the embedding count they will produce.

    Raises:
        InputError: the image is empty or its mode cannot be converted.
    """
    rgb = to_rgb(image)
    if rgb.width <= 0 or rgb.height <= 0:
        raise InputError(f"empty image ({rgb.width}x{rgb.height})")
    spec = MODE_SPECS[mode]
    side = spec.base_size
    grid = (1, 1)
    tiles = None
    global_view = stretched_view(rgb, side, side) if spec.stretch else padded_view(rgb, side)
    if spec.crop_mode:
        grid = tile_grid(rgb.width, rgb.height, min_tiles, max_tiles, spec.image_size)
        if grid[0] * grid[1] > 1:
            tiles = stretched_tiles(rgb, grid, spec.image_size)
    return PreparedImage(
        mode=mode,
        grid=grid,
        global_view=global_view,
        tiles=tiles,
        num_embeddings=image_embeddings(mode, grid),
    )


def prepare_image_ocr2(
    image: Image.Image,
    max_tiles: int = 6,
    min_tiles: int = 2,
    mode: Mode = Mode.GUNDAM,
) -> PreparedImage:
    """Build DeepSeek-OCR-2 encoder inputs, pixel for pixel as the original code does (facts §8.2).

    Global view: ``ImageOps.pad`` to 1024 (aspect kept, gray 127, centred with Python rounding;
    transformers' port centres with floor division, one pixel apart when the padding is 3 mod 4,
    see BENCHMARKS "DeepSeek-OCR-2"). Tiles: when either side exceeds 768, the v1 grid rule with
    768-px tiles picks (nw, nh) with ``min_tiles`` <= nw*nh <= ``max_tiles``; the page is
    stretch-resized to the tile canvas and cut row-major. ``max_tiles`` below 2 keeps only the
    global view (the per-page budget of auto mode).

    Returns:
        The prepared tensors, labelled with ``mode`` (under OCR-2 a mode only names the tile cap the
        caller derived ``max_tiles`` from); ``num_embeddings`` is 256 + 144*k + 1.

    Raises:
        InputError: the image is empty or its mode cannot be converted.
    """
    from deepocr_cli.planning.ocr2_geometry import OCR2_BASE, OCR2_TILE, ocr2_embeddings, ocr2_grid

    rgb = to_rgb(image)
    if rgb.width <= 0 or rgb.height <= 0:
        raise InputError(f"empty image ({rgb.width}x{rgb.height})")
    grid = ocr2_grid(rgb.width, rgb.height, max_tiles, min_tiles)
    tiles = stretched_tiles(rgb, grid, OCR2_TILE) if grid[0] * grid[1] > 1 else None
    return PreparedImage(
        mode=Mode(mode),
        grid=grid,
        global_view=padded_view(rgb, OCR2_BASE),
        tiles=tiles,
        num_embeddings=ocr2_embeddings(grid),
    )
