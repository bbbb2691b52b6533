"""Big scans: decoding a 600-dpi-class JPEG scan whole and then resizing, versus deepocr's reduced decode
(JPEG draft mode + reducing resize) straight to the size a mode needs. Prints both side by side.

    python bench/big_scan.py [--side-mp 90] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw

from deepocr_cli.inputs.render import open_document


def make_scan(path: Path, width: int, height: int) -> None:
    im = Image.new("L", (width, height), 250)
    draw = ImageDraw.Draw(im)
    for y in range(200, height - 200, 120):  # text-like rows of dark strokes
        for x in range(300, width - 300, 90):
            draw.rectangle((x, y, x + 60, y + 50), fill=30)
    im.save(path, quality=85)


def timed(fn, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--megapixels", type=float, default=90.0, help="scan size (default 90 MP, over Pillow's 89.5 MP)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    width = int((args.megapixels * 1e6 / 1.414) ** 0.5)  # A-series aspect
    height = int(width * 1.414)
    target = (1024, round(1024 * 1.414))  # Base mode's render size for a portrait page
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scan.jpg"
        make_scan(path, width, height)

        def whole() -> None:
            Image.MAX_IMAGE_PIXELS = None
            with Image.open(path) as im:
                im.load()
                im.convert("RGB").resize(target, Image.Resampling.LANCZOS)

        def reduced() -> None:
            with open_document(path) as reader:
                reader.render(0, target)

        t_whole = timed(whole, args.repeat)
        t_reduced = timed(reduced, args.repeat)
    print(f"scan {width}x{height} ({width * height / 1e6:.0f} MP) JPEG -> {target[0]}x{target[1]}, "
          f"median of {args.repeat}")
    print(f"{'decode whole + resize':<32}{t_whole:8.2f} s")
    print(f"{'deepocr reduced decode':<32}{t_reduced:8.2f} s   ({t_whole / t_reduced:.1f}x faster)")


if __name__ == "__main__":
    main()
