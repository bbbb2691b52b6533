"""deepocr: batch PDF/image to Markdown and JSON with DeepSeek-OCR."""

from __future__ import annotations

__version__ = "0.1.0"
