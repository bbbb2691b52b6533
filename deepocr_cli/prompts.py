"""Prompt strings of DeepSeek-OCR (facts §4.3), quoted exactly."""

from __future__ import annotations

#: Document to grounded Markdown with layout boxes (the default task).
MARKDOWN = "<image>\n<|grounding|>Convert the document to markdown."
#: Plain OCR without layout boxes.
FREE_OCR = "<image>\nFree OCR."
#: Deep parsing of a figure crop: charts to HTML tables, molecules to SMILES, captions.
PARSE_FIGURE = "<image>\nParse the figure."

TASK_PROMPTS = {"markdown": MARKDOWN, "free": FREE_OCR, "figure": PARSE_FIGURE}
