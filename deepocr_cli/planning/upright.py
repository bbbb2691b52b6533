"""Turning and straightening a page for the model, and the transform that maps its boxes back to the source."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from deepocr_cli.planning.scan import ScanVerdict


@dataclass(frozen=True)
class PageTransform:
    """Maps points and boxes of the prepared (turned, straightened) image back to the source image.

    Attributes:
        source_size: (width, height) of the image as the source shows it.
        size: (width, height) of the prepared image.
        matrix: 2x3 affine map from prepared to source pixel coordinates, row-major.
    """

    source_size: tuple[int, int]
    size: tuple[int, int]
    matrix: tuple[float, float, float, float, float, float] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)

    @property
    def identity(self) -> bool:
        """True when the prepared image is the source image."""
        return self.matrix == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0) and self.size == self.source_size

    def point(self, x: float, y: float) -> tuple[float, float]:
        """A point of the prepared image in source coordinates."""
        a, b, c, d, e, f = self.matrix
        return a * x + b * y + c, d * x + e * y + f

    def box(self, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """A box (x1, y1, x2, y2) of the prepared image as the smallest source box holding its four corners,
        clipped to the source page."""
        x1, y1, x2, y2 = box
        pts = [self.point(x, y) for x, y in ((x1, y1), (x2, y1), (x1, y2), (x2, y2))]
        w, h = self.source_size
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        return (
            int(min(max(math.floor(min(xs)), 0), w)),
            int(min(max(math.floor(min(ys)), 0), h)),
            int(min(max(math.ceil(max(xs)), 0), w)),
            int(min(max(math.ceil(max(ys)), 0), h)),
        )


_TURN = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_90}


def _compose(m: np.ndarray, n: np.ndarray) -> np.ndarray:
    """3x3 product: apply n, then m."""
    return m @ n


def transform_for(
    source_size: tuple[int, int], rotation: int, skew: float, size: tuple[int, int]
) -> PageTransform:
    """The transform from a prepared image of ``size`` back to the source image of ``source_size``, for a page
    turned ``rotation`` degrees clockwise, then straightened by ``skew`` degrees counter-clockwise about its
    centre (PIL's ``rotate(skew, expand=True)``)."""
    w, h = source_size
    to_src = np.eye(3)
    uw, uh = (h, w) if rotation in (90, 270) else (w, h)
    # prepared (u, v) -> source (x, y) for a clockwise turn of the source
    if rotation == 90:
        to_src = np.array([[0, 1, 0], [-1, 0, h], [0, 0, 1]], dtype=float)
    elif rotation == 180:
        to_src = np.array([[-1, 0, w], [0, -1, h], [0, 0, 1]], dtype=float)
    elif rotation == 270:
        to_src = np.array([[0, -1, w], [1, 0, 0], [0, 0, 1]], dtype=float)
    if skew:
        pw, ph = size
        t = math.radians(skew)
        cos, sin = math.cos(t), math.sin(t)
        # PIL turns the image counter-clockwise on screen (y down): a prepared point p maps to the turned image's
        # point cu + R (p - cp), R = [[cos, -sin], [sin, cos]]
        back = np.array(
            [[cos, -sin, uw / 2 - cos * pw / 2 + sin * ph / 2], [sin, cos, uh / 2 - sin * pw / 2 - cos * ph / 2],
             [0, 0, 1]]
        )
        to_src = _compose(to_src, back)
    m = to_src[:2].ravel()
    return PageTransform((w, h), size, tuple(float(round(v, 9)) for v in m))  # type: ignore[arg-type]


def prepare_page(image: Image.Image, verdict: ScanVerdict) -> tuple[Image.Image, PageTransform]:
    """Turn and straighten a page image as the verdict says (any resolution: the verdict is in degrees).

    Args:
        image: the page as rendered from the source.
        verdict: from :func:`analyse_scan`.

    Returns:
        The prepared image (the same object when nothing is to be done) and the transform mapping its
        coordinates back to ``image``'s. Corners uncovered by straightening are white.
    """
    out = image
    if verdict.rotation:
        out = image.transpose(_TURN[verdict.rotation])
    if verdict.skew:
        fill = (255,) * len(out.getbands()) if out.mode != "P" else 255
        out = out.rotate(verdict.skew, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=fill)
    return out, transform_for(image.size, verdict.rotation, verdict.skew, out.size)
