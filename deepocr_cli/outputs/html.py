"""Review page (``NAME.html``): each page image with its numbered, coloured block boxes beside the rendered Markdown.

One self-contained file: page images are embedded as JPEG data URLs, styles and the small script are inline,
nothing is fetched. Hovering or clicking a box highlights its text and scrolls it into view, and the other
way round. Each page starts with its flags (failed, truncated, repetition, escalated), mode and token counts.
The Markdown of every block comes from `render_markdown` (used as it is), turned into HTML by markdown-it
and reduced to an allowlist of tags, so model output can never run script in the page.
"""

from __future__ import annotations

import base64
import colorsys
import dataclasses
import hashlib
import html
import io
import logging
import re
from html.parser import HTMLParser
from typing import TYPE_CHECKING

from deepocr_cli.outputs.markdown import render_markdown
from deepocr_cli.outputs.parse import Block
from deepocr_cli.outputs.paths import OutputPaths
from deepocr_cli.outputs.results import DocResult, PageResult

if TYPE_CHECKING:
    from deepocr_cli.inputs.render import DocumentReader

log = logging.getLogger(__name__)

#: Longest side of an embedded page image, in pixels: enough to read boxes, small enough for big batches.
PREVIEW_MAX_SIDE = 1000
PREVIEW_JPEG_QUALITY = 70
LABEL_COLOURS = {
    "title": "#d62728", "sub_title": "#ff7f0e", "text": "#1f77b4", "image": "#2ca02c",
    "image_caption": "#17becf", "table": "#9467bd", "table_caption": "#8c564b", "table_footnote": "#bcbd22",
    "equation": "#e377c2", "list": "#7f7f7f",
}  # fmt: skip
_ALLOWED = frozenset(
    ["p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "table", "thead", "tbody", "tr", "td", "th", "em", "strong", "code", "pre", "blockquote", "br", "hr", "sub", "sup", "span", "div", "b", "i", "u", "s", "del"]
)
_VOID = frozenset({"br", "hr"})
_DROP_WITH_CONTENT = frozenset({"script", "style", "iframe", "object", "embed", "template", "svg", "math"})
_COMMENT_RE = re.compile(r"<!--.*?-->", re.DOTALL)
# A backslash before ASCII punctuation is a CommonMark escape; LaTeX (\(, \[, \{, \_) must keep it.
_ESCAPE_RE = re.compile(r"\\(?=[!-/:-@\[-`{-~])")

CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:0;background:#f3f3f3;color:#222}
header{padding:12px 20px;background:#222;color:#eee}header h1{font-size:18px;margin:0 0 4px}
.page{margin:16px;padding:12px;background:#fff;border:1px solid #ccc}
.flags{margin:0 0 10px;font-size:13px}.flag{display:inline-block;padding:1px 7px;margin-right:6px;border-radius:3px;
color:#fff;background:#888}.flag.failed{background:#b00}.flag.truncated{background:#d60}.flag.repetition{background:#a50}
.flag.escalated{background:#36c}.flag.ok{background:#393}
.cols{display:flex;gap:16px;align-items:flex-start}.scan{flex:0 0 560px;position:sticky;top:0}
.frame{position:relative;width:560px;background:#ddd}.frame img{display:block;width:100%;height:100%}
.box{position:absolute;box-sizing:border-box;border:3px solid var(--c);cursor:pointer}
.box .num,.blk .num{background:var(--c);color:#fff;font:bold 11px/15px sans-serif;padding:0 4px}
.box .num{position:absolute;left:-3px;top:-3px}
.box.hl{background:color-mix(in srgb,var(--c) 28%,transparent)}
.text{flex:1;min-width:0}.blk{border-left:5px solid var(--c);padding:2px 8px;margin:0 0 8px;cursor:pointer}
.blk.hl{background:color-mix(in srgb,var(--c) 18%,#fff)}.blk .label{color:#777;font-size:11px;margin-left:6px}
.blk table{border-collapse:collapse}.blk td,.blk th{border:1px solid #bbb;padding:2px 5px}
.fig{color:#555;font-style:italic}.warn{color:#a50;font-size:12px;white-space:pre-wrap}
"""
SCRIPT = """
(function(){
  function all(id){return document.querySelectorAll('[data-block="'+id+'"]');}
  function set(id,on){all(id).forEach(function(e){e.classList.toggle('hl',on);});}
  document.querySelectorAll('[data-block]').forEach(function(el){
    var id=el.getAttribute('data-block');
    el.addEventListener('mouseenter',function(){set(id,true);});
    el.addEventListener('mouseleave',function(){set(id,false);});
    el.addEventListener('click',function(){
      document.querySelectorAll('.hl').forEach(function(e){e.classList.remove('hl');});
      set(id,true);
      var other=el.classList.contains('box')?document.getElementById(id):document.querySelector('.box[data-block="'+id+'"]');
      if(other){other.scrollIntoView({block:'center',behavior:'smooth'});}
    });
  });
})();
"""


def label_colour(label: str) -> str:
    """A stable colour per layout label: a fixed one for the model's usual labels, a hashed hue otherwise."""
    if label in LABEL_COLOURS:
        return LABEL_COLOURS[label]
    hue = int(hashlib.sha1(label.encode()).hexdigest()[:4], 16) / 0xFFFF
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.75)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


class _Sanitizer(HTMLParser):
    """Keep allowlisted tags (only rowspan/colspan attributes), escape text, turn images into their alt text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROP_WITH_CONTENT:
            self._skip += 1
        elif self._skip:
            return
        elif tag == "img":
            alt = dict(attrs).get("alt") or "figure"
            self.out.append(f'<span class="fig">[{html.escape(alt)}]</span>')
        elif tag in _ALLOWED:
            keep = "".join(
                f' {k}="{html.escape(v)}"' for k, v in attrs if k in ("rowspan", "colspan") and v and v.isdigit()
            )
            self.out.append(f"<{tag}{keep}>")

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROP_WITH_CONTENT:
            self._skip = max(0, self._skip - 1)
        elif not self._skip and tag in _ALLOWED and tag not in _VOID:
            self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.out.append(html.escape(data, quote=False))


def sanitize(fragment: str) -> str:
    """Reduce an HTML fragment to safe markup (see `_Sanitizer`)."""
    s = _Sanitizer()
    s.feed(fragment)
    s.close()
    return "".join(s.out)


def _markdown_html(doc: DocResult, page: PageResult, block: Block) -> str:
    from markdown_it import MarkdownIt

    single = dataclasses.replace(page, blocks=[block], truncated=False, error=None)
    md = render_markdown(dataclasses.replace(doc, pages=[single]))
    md = _ESCAPE_RE.sub(r"\\\\", _COMMENT_RE.sub("", md).strip())
    return sanitize(MarkdownIt("commonmark", {"html": True}).enable("table").render(md))


def repetition_loop(text: str, tail: int = 400, min_repeats: int = 4) -> bool:
    """Whether the text ends in a loop: one unit (up to 100 characters) repeated at least ``min_repeats`` times."""
    end = text.rstrip()[-tail:]
    for size in range(1, 101):
        unit = end[-size:]
        if len(end) >= size * min_repeats and end.endswith(unit * min_repeats) and unit.strip():
            return True
    return False


def page_flags(page: PageResult) -> list[str]:
    """The review flags of a page: failed, truncated, repetition, escalated (an empty list means fine)."""
    flags = []
    if page.error is not None:
        flags.append("failed")
    if page.truncated:
        flags.append("truncated")
    if repetition_loop(page.raw_text):
        flags.append("repetition")
    attempts = (page.plan or {}).get("attempts") or []
    if len(attempts) > 1:
        flags.append("escalated")
    return flags


def _preview(doc: DocResult, page: PageResult, reader: DocumentReader | None) -> str | None:
    """The page image as a JPEG data URL, or None when the source cannot be rendered."""
    if reader is None or page.width <= 0 or page.height <= 0:
        return None
    scale = min(1.0, PREVIEW_MAX_SIDE / max(page.width, page.height))
    size = (max(1, round(page.width * scale)), max(1, round(page.height * scale)))
    try:
        image = reader.render(page.index, size=size)
    except Exception as e:  # noqa: BLE001 - the review page still shows the boxes and the text
        log.warning("%s: page %d not rendered for the review page: %s", doc.source, page.index + 1, e)
        return None
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=PREVIEW_JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _page_html(doc: DocResult, page: PageResult, reader: DocumentReader | None) -> str:
    n = page.index + 1
    flags = page_flags(page)
    chips = "".join(f'<span class="flag {f}">{f}</span>' for f in flags) or '<span class="flag ok">ok</span>'
    info = (
        f"page {n} · mode {html.escape(page.mode)} · {page.vision_tokens} vision tokens · "
        f"{page.generated_tokens} generated tokens · {len(page.blocks)} blocks"
    )
    parts = [f'<section class="page" id="page-{n}" data-page="{n}" data-flags="{" ".join(flags)}">',
             f'<div class="flags">{chips}{info}</div>']  # fmt: skip
    if page.error is not None:
        parts.append(f'<p class="warn">failed at {html.escape(page.error.stage)}: {html.escape(page.error.message)}</p>')
    src = _preview(doc, page, reader)
    ratio = f"{page.width}/{page.height}" if page.width and page.height else "1/1.414"
    parts.append(f'<div class="cols"><div class="scan"><div class="frame" style="aspect-ratio:{ratio}">')
    if src:
        parts.append(f'<img alt="page {n}" src="{src}">')
    boxes, texts = [], []
    for block in page.blocks:
        bid = f"p{n}-b{block.index}"
        colour = label_colour(block.label)
        for x0, y0, x1, y1 in block.boxes_px:
            style = (
                f"left:{100 * x0 / page.width:.3f}%;top:{100 * y0 / page.height:.3f}%;"
                f"width:{100 * (x1 - x0) / page.width:.3f}%;height:{100 * (y1 - y0) / page.height:.3f}%;--c:{colour}"
            )
            boxes.append(
                f'<div class="box" data-block="{bid}" data-label="{html.escape(block.label)}" style="{style}" '
                f'title="{block.index + 1}: {html.escape(block.label)}"><span class="num">{block.index + 1}</span></div>'
            )
        texts.append(
            f'<div class="blk" id="{bid}" data-block="{bid}" style="--c:{colour}"><span class="num">'
            f'{block.index + 1}</span><span class="label">{html.escape(block.label)}</span>'
            f"{_markdown_html(doc, page, block)}</div>"
        )
    parts.extend(boxes)
    parts.append('</div></div><div class="text">')
    parts.extend(texts)
    if page.warnings:
        parts.append(f'<div class="warn">{html.escape(chr(10).join(page.warnings))}</div>')
    parts.append("</div></div></section>")
    return "\n".join(parts)


def render_html(result: DocResult, paths: OutputPaths) -> bytes:
    """Build ``NAME.html``, the self-contained review page of a converted document.

    Args:
        result: the converted document; its source is rendered again for the page images (a page that
            cannot be rendered is shown without its image).
        paths: the document's output paths (unused; part of the renderer signature).

    Returns:
        UTF-8 HTML bytes.
    """
    del paths
    from deepocr_cli.inputs.render import open_document

    reader: DocumentReader | None
    try:
        reader = open_document(result.source, password=result.password)
    except Exception as e:  # noqa: BLE001 - boxes and text are still worth reviewing
        log.warning("%s: no page images for the review page: %s", result.source, e)
        reader = None
    try:
        pages = [_page_html(result, p, reader) for p in result.pages]
    finally:
        if reader is not None:
            reader.close()
    title = html.escape(result.source_rel)
    model = html.escape(f"{result.model.get('id')} ({result.model.get('revision') or 'default revision'})")
    summary = (
        f"{len(result.pages)} page(s) · status {html.escape(result.status)} · model {model} · "
        f"{sum(p.generated_tokens for p in result.pages)} generated tokens"
    )
    doc = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>deepocr review: {title}</title><style>{CSS}</style></head>\n"
        f"<body><header><h1>{title}</h1><div>{summary}</div></header>\n"
        + "\n".join(pages)
        + f"\n<script>{SCRIPT}</script></body></html>\n"
    )
    return doc.encode("utf-8")
