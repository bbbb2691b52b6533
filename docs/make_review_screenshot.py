"""Make docs/review-page.png: the HTML review page of sample_docs/two_columns.pdf, screenshotted by headless Chromium.

No model weights are needed: the page's "model output" is written in DeepSeek-OCR's grounded format from the
PDF's own text layer (one block per PyMuPDF text block, labelled by simple rules), so the boxes sit on the
text they name. Run from the repository root: ``python docs/make_review_screenshot.py`` (needs chromium).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pymupdf
from PIL import Image

from deepocr_cli.outputs.html import render_html
from deepocr_cli.outputs.parse import parse_grounded
from deepocr_cli.outputs.paths import output_paths
from deepocr_cli.outputs.results import DocResult, PageResult
from deepocr_cli.sample_docs import make_sample_docs

OUT = Path(__file__).resolve().parent / "review-page.png"


def grounded_from_text_layer(page: pymupdf.Page) -> str:
    """The page's text blocks as grounded markup: ``<|ref|>label<|/ref|><|det|>[[x1, y1, x2, y2]]<|/det|>``."""
    parts = []
    blocks = [b for b in page.get_text("dict")["blocks"] if b["type"] == 0]
    for i, b in enumerate(blocks):
        text = " ".join(" ".join(s["text"] for s in line["spans"]).strip() for line in b["lines"]).strip()
        if not text:
            continue
        label = "title" if i == 0 else "table_caption" if text.startswith("Table") else "text"
        x0, y0, x1, y1 = (round(v / s * 999) for v, s in zip(b["bbox"], (page.rect.width, page.rect.height) * 2, strict=True))
        body = f"# {text}" if label == "title" else text
        parts.append(f"<|ref|>{label}<|/ref|><|det|>[[{x0}, {y0}, {x1}, {y1}]]<|/det|>\n{body}\n")
    return "\n".join(parts)


def main() -> int:
    chromium = shutil.which("chromium")
    if chromium is None:
        print("chromium is not installed", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        source = next(p for p in make_sample_docs(Path(tmp)) if p.name == "two_columns.pdf")
        with pymupdf.open(source) as pdf:
            raw = grounded_from_text_layer(pdf[0])
            w, h = round(pdf[0].rect.width * 2), round(pdf[0].rect.height * 2)
        parsed = parse_grounded(raw, w, h)
        page = PageResult(index=0, width=w, height=h, mode="small", grid=(1, 1), vision_tokens=100,
                          image_embeddings=111, raw_text=raw, generated_tokens=512, blocks=parsed.blocks)  # fmt: skip
        doc = DocResult(source, "two_columns.pdf", source.stat().st_size, "0" * 64, 1,
                        {"id": "deepseek-ai/DeepSeek-OCR", "revision": None}, {}, [page])  # fmt: skip
        html_path = Path(tmp) / "two_columns.html"
        html_path.write_bytes(render_html(doc, output_paths(source, source, None)))
        shot = Path(tmp) / "shot.png"
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--force-device-scale-factor=1", "--window-size=1280,900", f"--user-data-dir={tmp}/profile",
                        f"--screenshot={shot}", html_path.as_uri()], check=True, capture_output=True)  # fmt: skip
        image = Image.open(shot).convert("RGB")
        image.resize((960, 675), Image.Resampling.LANCZOS).quantize(colors=96).save(OUT, optimize=True)
    print(OUT, OUT.stat().st_size, "bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
