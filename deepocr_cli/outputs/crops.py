"""Figure crops of a page (JPEG beside the Markdown) and, on request, drawings of recognised molecules."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from deepocr_cli.outputs.atomic import atomic_write
from deepocr_cli.outputs.parse import Box
from deepocr_cli.outputs.paths import OutputPaths
from deepocr_cli.outputs.results import PageResult

#: Crop quality: upstream saves figure crops as JPEG; 90 keeps small print in charts legible.
JPEG_QUALITY = 90


def crop_name(page_index: int, block_index: int, box_index: int | None = None) -> str:
    """File name of a figure crop: page number 1-based (as in the Markdown markers), block index as in the JSON."""
    suffix = "" if box_index is None else f"_b{box_index}"
    return f"p{page_index + 1:03d}_{block_index:02d}{suffix}.jpg"


def _crop_box(box: Box, scale_x: float, scale_y: float, margin: int, size: tuple[int, int]) -> Box:
    x1, y1, x2, y2 = box
    w, h = size
    return (
        max(0, int(x1 * scale_x) - margin),
        max(0, int(y1 * scale_y) - margin),
        min(w, int(x2 * scale_x) + margin),
        min(h, int(y2 * scale_y) + margin),
    )


def save_page_crops(page: PageResult, image: Image.Image, paths: OutputPaths, margin: int = 0) -> None:
    """Save every ``image`` block's boxes as JPEG crops and record their links on the blocks.

    Crops are named ``<stem>_images/p{page:03d}_{block:02d}.jpg`` (``_b{k}`` per box when a block has
    several); ``block.image_path``/``image_paths`` get links relative to the Markdown file. Empty boxes
    are skipped with a page warning.

    Args:
        page: the page; its ``image`` blocks are updated in place.
        image: the rendered page the model saw (``page.width`` x ``page.height``).
        paths: the document's output paths.
        margin: extra pixels around each box, clipped to the page.

    Raises:
        OutputError: a crop cannot be written.
    """
    if image.size != (page.width, page.height):
        # Boxes refer to the rendered size; scale instead of cropping the wrong region.
        page.warnings.append(
            f"crop image is {image.size}, page is {(page.width, page.height)}: boxes rescaled"
        )
    scale_x = image.width / page.width if page.width else 1.0
    scale_y = image.height / page.height if page.height else 1.0
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    for block in page.blocks:
        if block.label != "image":
            continue
        links: list[str] = []
        multi = len(block.boxes_px) > 1
        for k, box in enumerate(block.boxes_px):
            x1, y1, x2, y2 = _crop_box(box, scale_x, scale_y, 0, rgb.size)
            if x2 <= x1 or y2 <= y1:
                # Judged before the margin: a margin would turn a degenerate box into a blank crop.
                page.warnings.append(f"block {block.index}: empty image box {box}, no crop saved")
                continue
            x1, y1, x2, y2 = _crop_box(box, scale_x, scale_y, margin, rgb.size)
            name = crop_name(page.index, block.index, k if multi else None)
            crop = rgb.crop((x1, y1, x2, y2))
            atomic_write(paths.images_dir / name, lambda f, c=crop: c.save(f, "JPEG", quality=JPEG_QUALITY))
            links.append(f"{paths.images_dir.name}/{name}")
        block.image_paths = links
        block.image_path = links[0] if links else None


def render_molecule_images(page: PageResult, paths: OutputPaths) -> list[Path]:
    """Draw every valid molecule of a page beside its figure crop (`--render-molecules`)."""
    from deepocr_cli.outputs.molecules import render_molecule_png

    written = []
    for block in page.blocks:
        fig = block.figure
        mol = getattr(fig, "molecule", None) if getattr(fig, "kind", "") == "molecule" else None
        if mol and mol.get("valid"):
            path = paths.images_dir / f"p{page.index + 1:03d}_{block.index:02d}_molecule.png"
            if render_molecule_png(mol["smiles"], path):
                written.append(path)
    return written
