"""Pixel-level helpers of the reader: any Pillow mode to RGB, size caps, the image pixel-count guard."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from deepocr_cli.errors import InputError

_WHITE = (255, 255, 255)


def cap_size(w: int, h: int, max_pixels: int) -> tuple[int, int]:
    """Shrink (w, h) keeping the aspect so that w*h <= max_pixels."""
    if w * h <= max_pixels:
        return w, h
    scale = math.sqrt(max_pixels / (w * h))
    return max(1, math.floor(w * scale)), max(1, math.floor(h * scale))


def check_pixel_cap(w: int, h: int, limit: int | None) -> None:
    """Refuse images over ``limit`` pixels before decoding them (Pillow's own guard is replaced by this one)."""
    if limit and w * h > limit:
        raise InputError(
            f"image too large (decompression-bomb guard): {w}x{h} = {w * h:,} pixels exceeds "
            f"the cap of {limit:,} (--max-image-pixels)"
        )


def os_reason(e: OSError) -> str:
    if isinstance(e, FileNotFoundError):
        return "file vanished (no longer exists)"
    if isinstance(e, PermissionError):
        return "permission denied"
    if isinstance(e, IsADirectoryError):
        return "is a directory"
    return str(e.strerror or e)


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, flattening transparency on white.

    Handles palette (with or without transparency), 1-bit, L/LA, RGBA, CMYK, YCbCr and 16/32-bit integer or
    float grayscale (scaled, not clipped, to 8 bits).

    Args:
        im: a loaded (or lazily opened) image.

    Returns:
        An RGB image, ``im`` itself when it already is RGB without transparency.
    """
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(im)
        if mode == "F":
            a = a.astype(np.float64)
            top = 1.0 if np.nanmax(a, initial=0.0) <= 1.0 else 255.0  # float images are 0..1 or 0..255
            a8 = np.clip(np.nan_to_num(a) * (255.0 / top), 0, 255).astype(np.uint8)
        else:
            a = a.astype(np.int64)
            # 16-bit data (I;16*, or mode I as Pillow opens 16-bit PNGs) spans 0..65535; scale it to 0..255.
            top = 65535 if mode.startswith("I;16") or a.max(initial=0) > 255 else 255
            a8 = (np.clip(a, 0, top) * 255 // top).astype(np.uint8)
        return Image.fromarray(a8, "L").convert("RGB")
    if mode == "RGB" and "transparency" not in im.info:
        return im
    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in im.info
    if has_alpha:
        rgba = im.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*_WHITE, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return im.convert("RGB")



