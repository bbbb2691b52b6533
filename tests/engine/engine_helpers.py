"""Pages for the engine tests: plain images of numbered text lines, one size per request."""

from __future__ import annotations

from PIL import Image, ImageDraw


def lined_page(width: int, height: int, text: str) -> Image.Image:
    """A white page with ``text`` and the line's offset written every 40 px down its left edge."""
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    for i in range(0, height, 40):
        draw.text((10, i), f"{text} line {i}", fill="black")
    return img
