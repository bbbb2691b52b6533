"""The text estimate both estimators return, and the constants they share (one direction of imports:
estimate -> image_estimate -> textest)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

#: Long side of the working raster (px). 1400 px is ~120 dpi on A4: 6-pt print still has a ~4-px x-height.
WORK_LONG_SIDE = 1400
#: min_text_height: the size at this quantile of characters (5th percentile).
SMALL_TEXT_QUANTILE = 0.05
# The same corpus and generated text fitted with only two classes (all non-CJK characters including whitespace,
# CJK characters): 3.50 chars per token (the corpus README's constant) and 0.77 tokens per CJK character. The
# image path cannot tell letters from digits, so it uses these.
LATIN_CHARS_PER_TOKEN = 3.50
CJK_TOKENS_PER_CHAR = 0.77


@dataclass(frozen=True)
class TextEstimate:
    """Estimated amount of text on one page.

    Attributes:
        tokens: estimated DeepSeek text tokens of the page.
        source: "text_layer" or "image".
        chars: characters (counted from the text layer, estimated from the image).
        cjk_chars: CJK characters among them.
        lines: text lines.
        min_text_height: smallest font size (5th percentile by characters) as a fraction of the page's longer
            side, or None when there is no text; tiny print needs more pixels.
        note: why the source was chosen, e.g. "text layer rejected: invisible text".
    """

    tokens: float
    source: str
    chars: int
    cjk_chars: int
    lines: int
    min_text_height: float | None
    note: str = ""

    def to_json(self) -> dict:
        """Plain JSON-serialisable dict (tokens rounded to 0.1)."""
        d = asdict(self)
        d["tokens"] = round(self.tokens, 1)
        if self.min_text_height is not None:
            d["min_text_height"] = round(self.min_text_height, 5)
        return d
