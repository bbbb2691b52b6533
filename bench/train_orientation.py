"""Train the orientation classifier of scan preparation (deepocr_cli/planning/orient.py) from pages it renders.

Usage: python bench/train_orientation.py [--pages 1000] [--val-pages 200] [--seed 1] [--epochs 8] [--big-cjk 0]
       [--out deepocr_cli/planning/orient_weights.npz]

Deterministic for a given seed, Python and PyMuPDF (torch on 1 thread). Nothing of the benchmark (the corpus,
sample_docs, bench/scan_prep.py's hard cases) is read: every page is made here with PyMuPDF's own fonts:

- Latin: words of the Python standard library's docstrings and lines of its source code, in the Base-14 fonts
  (Helvetica, Times, Courier: regular, bold, italic), 6 to 32 pt;
- CJK: random GB2312 level-1 hanzi (simplified), Big5 level-1 hanzi (traditional), kana with kanji, and KS X 1001
  hangul syllables, with their punctuation and some Latin words and digits, in MuPDF's CJK fonts (filled, or
  filled and stroked as bold);
- layouts: prose in one or two columns with titles, code listings, tables of short cells (with rules and a dark
  header row), slides (landscape, white titles on dark bars, a few bullet lines), reference cards (three narrow
  columns of small print), sparse pages; with --big-cjk S, a share S of the CJK pages slides of large glyphs
  (24-60 pt lines, titles and light text on dark bars; off by default); print from black to light grey;
- scanned: skewed +-10 degrees, turned 0/90/180/270, paper tone, bleed-through of the previous page, Gaussian noise,
  salt and pepper, blur, JPEG.

Each scan goes through scan preparation's own analysis (cleaned ink, skew on both axes, the estimator's fragments
on each reading) and its patches are labelled by how far each reading is turned from upright; the 180-degree turn
of every patch is added. A small CNN is fitted (Adam, cross-entropy), and the validation pages (another seed) are
reported per page: both readings' patches summed, undecided under each margin (scan preparation reads the second
axis only when the first leaves the page unclear).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import os
import random
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pymupdf  # noqa: E402
from PIL import Image, ImageFilter  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepocr_cli.planning import orient  # noqa: E402
from deepocr_cli.planning.estimate import _render_gray  # noqa: E402
from deepocr_cli.planning.image_estimate import _analyse  # noqa: E402
from deepocr_cli.planning.scan import clean_ink  # noqa: E402
from deepocr_cli.planning.skew import column_profiles, profiles, search_skew, straighten  # noqa: E402

LATIN_FONTS = ["helv", "heit", "hebo", "tiro", "tiit", "tibo", "cour", "cobo", "hebi", "tibi"]
CODE_FONTS = ["cour", "cobo", "coit"]
_STDLIB = ["os", "re", "json", "argparse", "collections", "functools", "itertools", "pathlib", "subprocess",
           "textwrap", "string", "random", "statistics", "typing", "dataclasses", "inspect", "logging", "csv",
           "email", "http.client", "urllib.parse", "shutil", "tempfile", "datetime", "decimal", "fractions",
           "heapq", "bisect", "enum", "abc", "contextlib", "threading", "queue", "socket", "zipfile", "tarfile"]


# --------------------------------------------------------------------------- text sources


def _texts() -> tuple[list[str], list[str]]:
    """Words of stdlib docstrings and lines of stdlib source code (deterministic for a Python version)."""
    import importlib

    words: list[str] = []
    code: list[str] = []
    for name in _STDLIB:
        mod = importlib.import_module(name)
        with warnings.catch_warnings():  # typing.io and typing.re warn when looked at
            warnings.simplefilter("ignore", DeprecationWarning)
            for obj in [mod, *(getattr(mod, a) for a in sorted(dir(mod)) if not a.startswith("_"))]:
                doc = getattr(obj, "__doc__", None)
                if isinstance(doc, str) and (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismodule(obj)):
                    words += doc.split()
        with contextlib.suppress(OSError, TypeError):
            code += [ln.rstrip() for ln in inspect.getsource(mod).splitlines() if ln.strip()]
    return words, code


def _cjk_pools() -> dict[str, str]:
    """Common characters of each CJK script, from Python's own codecs (no data files)."""

    def table(codec: str, rows: range, cols: range) -> str:
        out = []
        for a in rows:
            for b in cols:
                with contextlib.suppress(UnicodeDecodeError):
                    out.append(bytes([a, b]).decode(codec))
        return "".join(out)

    hanzi = table("gb2312", range(0xB0, 0xD8), range(0xA1, 0xFF))  # GB2312 level 1: 3,755 common hanzi
    trad = table("big5", range(0xA4, 0xC6), range(0x40, 0x7F)) + table("big5", range(0xA4, 0xC6), range(0xA1, 0xFF))
    hangul = table("euc_kr", range(0xB0, 0xC9), range(0xA1, 0xFF))  # KS X 1001: 2,350 syllables
    kana = "".join(chr(c) for c in range(0x3041, 0x3094)) + "".join(chr(c) for c in range(0x30A1, 0x30F7))
    return {"zh": hanzi, "zht": trad, "ja": kana * 3 + hanzi[:1500], "ko": hangul}


class Source:
    def __init__(self) -> None:
        self.words, self.code = _texts()
        self.pools = _cjk_pools()

    def latin(self, rng: random.Random, n_words: int) -> str:
        i = rng.randrange(max(1, len(self.words) - n_words))
        return " ".join(self.words[i : i + n_words])

    def cjk(self, rng: random.Random, lang: str, n: int) -> str:
        pool = self.pools[lang]
        out = []
        punct = "，。、；：" if lang != "ko" else ",. "
        for _ in range(n):
            r = rng.random()
            if r < 0.08:
                out.append(rng.choice(punct))
            elif r < 0.1:
                out.append(rng.choice(["「", "」", "（", "）", "《", "》"]) if lang != "ko" else "(")
            elif r < 0.12:
                out.append(rng.choice(self.words)[:8] if rng.random() < 0.5 else str(rng.randrange(1, 2000)))
            else:
                out.append(pool[rng.randrange(len(pool))])
        return "".join(out)


# --------------------------------------------------------------------------- pages


def _put(page, x, y, text, fs, font, color, bold=False) -> None:
    page.insert_text((x, y), text, fontsize=fs, fontname=font, color=color,
                     render_mode=2 if bold else 0, border_width=0.04 if bold else 0.05)


_FONTS: dict[str, pymupdf.Font] = {}


def _latin_fit(src: Source, rng: random.Random, width: float, fs: float, font: str) -> str:
    f = _FONTS.setdefault(font, pymupdf.Font(font))
    n = max(1, int(width / (fs * 0.5 * 6)))
    text = src.latin(rng, n + 3)
    while len(text) > 1 and f.text_length(text, fs) > width:
        text = text[: text.rfind(" ")] if " " in text else text[:-1]
    return text


def _line(src: Source, rng: random.Random, lang: str, width: float, fs: float, font: str) -> str:
    if lang == "latin":
        return _latin_fit(src, rng, width, fs, font)
    return src.cjk(rng, lang, max(1, int(width / fs)))


def make_page(src: Source, rng: random.Random, big_cjk: float = 0.0) -> tuple[np.ndarray, str]:
    """One rendered page (gray, at the estimator's resolution) and its script; ``big_cjk``: the share of CJK
    pages made slides of large glyphs (0, the default, draws nothing more from ``rng``: the shipped weights'
    pages)."""
    lang = rng.choice(["latin", "latin", "latin", "zh", "zht", "ja", "ko"])
    cjk_font = {"zh": "china-s", "zht": "china-t", "ja": "japan", "ko": "korea"}.get(lang)
    kind = rng.choice(["prose", "prose", "prose", "code", "table", "slide", "card", "sparse"])
    if big_cjk and lang != "latin" and rng.random() < big_cjk:  # CJK glyphs 24-60 pt: titles, bars, sparse lines
        kind = "bigslide"
    if kind == "code" and lang != "latin" and rng.random() < 0.6:
        lang, cjk_font = "latin", None
    landscape = kind in ("slide", "bigslide") or rng.random() < 0.1
    w, h = (842.0, 595.0) if landscape else (595.0, 842.0)
    doc = pymupdf.open()
    page = doc.new_page(width=w, height=h)
    g = rng.choice([0.0, 0.0, 0.0, 0.2, 0.4, rng.uniform(0.5, 0.75)])
    color = (g, g, g)
    bold = rng.random() < 0.2

    def font_for(code: bool = False) -> str:
        if cjk_font:
            return cjk_font
        return rng.choice(CODE_FONTS) if code else rng.choice(LATIN_FONTS)

    m = rng.uniform(30, 80)
    if kind in ("prose", "sparse", "card"):
        cols = 3 if kind == "card" else rng.choice([1, 1, 2])
        fs = rng.uniform(5.5, 8) if kind == "card" else rng.uniform(6, 14)
        gap = 14.0
        cw = (w - 2 * m - gap * (cols - 1)) / cols
        y0 = m + fs
        if rng.random() < 0.5:  # a title
            tfs = rng.uniform(14, 32)
            _put(page, m, y0 + tfs, _line(src, rng, lang, min(w - 2 * m, tfs * 14), tfs, font_for()), tfs,
                 font_for(), color, bold=True)
            y0 += 2 * tfs
        font = font_for()
        lines = rng.randint(2, 8) if kind == "sparse" else 10_000
        for c in range(cols):
            y = y0
            x = m + c * (cw + gap)
            k = 0
            while y < h - m and k < lines:
                short = rng.random() < 0.08  # a paragraph's last line
                lw = cw * (rng.uniform(0.2, 0.8) if short else 1.0)
                _put(page, x + (fs * 2 if rng.random() < 0.05 else 0), y, _line(src, rng, lang, lw, fs, font), fs,
                     font, color, bold)
                y += fs * rng.uniform(1.15, 1.5) * (2 if short and rng.random() < 0.5 else 1)
                k += 1
    elif kind == "code":
        fs = rng.uniform(6.5, 10)
        font = font_for(code=True)
        i = rng.randrange(len(src.code))
        y = m + fs
        while y < h - m:
            ln = src.code[i % len(src.code)]
            i += 1
            indent = len(ln) - len(ln.lstrip())
            _put(page, m + indent * fs * 0.6, y, ln.strip()[: int((w - 2 * m) / (fs * 0.6)) - indent], fs, font,
                 color, bold)
            y += fs * rng.uniform(1.1, 1.35)
    elif kind == "table":
        fs = rng.uniform(6, 9.5)
        ncol = rng.randint(2, 8)
        cw = (w - 2 * m) / ncol
        rows = int((h - 2 * m) / (fs * rng.uniform(1.3, 2.0)))
        rh = (h - 2 * m) / max(rows, 1)
        font = font_for(code=rng.random() < 0.4)
        ruled = rng.random() < 0.5
        for r in range(rows):
            y = m + (r + 1) * rh - rh * 0.3
            head = r == 0 and rng.random() < 0.5
            if head:
                page.draw_rect(pymupdf.Rect(m, m + r * rh, w - m, m + (r + 1) * rh), color=None, fill=(0.15,) * 3)
            for c in range(ncol):
                if rng.random() < 0.5:
                    cell = str(round(rng.uniform(0, 10 ** rng.randint(1, 5)), rng.randint(0, 3)))
                else:
                    cell = _line(src, rng, lang, cw * rng.uniform(0.3, 0.9), fs, font)
                _put(page, m + c * cw + 2, y, cell, fs, font, (1, 1, 1) if head else color, bold)
            if ruled:
                page.draw_line((m, m + (r + 1) * rh), (w - m, m + (r + 1) * rh), color=(0.3,) * 3, width=0.5)
    elif kind == "bigslide":
        _big_slide(page, src, rng, lang, w, h, m, color, font_for())
    else:  # slide: a dark title bar with light text, a few bullet lines
        bar = rng.uniform(50, 90)
        shade = rng.uniform(0.05, 0.35)
        page.draw_rect(pymupdf.Rect(0, 0, w, bar), color=None, fill=(shade, shade * 0.8, shade * 1.3 % 1))
        tfs = rng.uniform(18, 30)
        _put(page, m, bar * 0.5 + tfs * 0.35, _line(src, rng, lang, w * 0.7, tfs, font_for()), tfs, font_for(),
             (1, 1, 1), bold=True)
        fs = rng.uniform(12, 22)
        y = bar + 2 * fs
        font = font_for()
        for _ in range(rng.randint(1, 8)):
            if y > h - m:
                break
            if rng.random() < 0.3:  # a light-on-dark box
                page.draw_rect(pymupdf.Rect(m - 4, y - fs, w - m, y + 0.4 * fs), color=None, fill=(shade,) * 3)
                col = (1, 1, 1)
            else:
                col = color
            _put(page, m, y, _line(src, rng, lang, rng.uniform(0.3, 1) * (w - 2 * m), fs, font), fs, font, col,
                 bold)
            y += fs * rng.uniform(1.4, 2.2)
    if rng.random() < 0.35:
        _figure(page, rng, w, h)
    gray = _render_gray(page).copy()
    doc.close()
    return gray, "latin" if lang == "latin" else "cjk"


def _big_slide(page, src: Source, rng: random.Random, lang: str, w: float, h: float, m: float, color, font: str
               ) -> None:
    """A slide of large glyphs: maybe a dark title bar along the top, then a few lines of 24-60 pt, some of them
    light text on dark bars, some short (a heading, a label), with wide gaps."""
    y = m
    shade = rng.uniform(0.05, 0.4)
    fill = (shade, shade * rng.uniform(0.6, 1.2) % 1, shade * rng.uniform(0.8, 1.5) % 1)
    if rng.random() < 0.6:
        tfs = rng.uniform(28, 60)
        bar = tfs * rng.uniform(1.5, 2.2)
        page.draw_rect(pymupdf.Rect(0, 0, w, bar), color=None, fill=fill)
        _put(page, m, bar * 0.5 + tfs * 0.35, _line(src, rng, lang, rng.uniform(0.3, 0.85) * (w - 2 * m), tfs, font),
             tfs, font, (1, 1, 1), bold=rng.random() < 0.5)
        y = bar + tfs * rng.uniform(0.6, 1.2)
    while y < h - m:
        fs = rng.uniform(24, 60)
        y += fs * rng.uniform(1.2, 2.4)
        if y > h - m * 0.5:
            break
        text = _line(src, rng, lang, rng.uniform(0.15, 1.0) * (w - 2 * m), fs, font)
        if rng.random() < 0.3:  # light text on a dark bar
            page.draw_rect(pymupdf.Rect(m - 6, y - 1.05 * fs, rng.uniform(0.6, 1) * w, y + 0.35 * fs), color=None,
                           fill=fill)
            _put(page, m, y, text, fs, font, (1, 1, 1), rng.random() < 0.4)
        else:
            _put(page, m + rng.uniform(0, 0.2) * w, y, text, fs, font, color, rng.random() < 0.3)


def _figure(page, rng: random.Random, w: float, h: float) -> None:
    """A drawing or a photo on part of the page (over any text there): lines, curves, circles, hatching, toned
    boxes, or a block of smoothed noise; it carries no orientation, and the classifier must learn to doubt it."""
    x0, y0 = rng.uniform(0, w * 0.6), rng.uniform(0, h * 0.7)
    x1, y1 = x0 + rng.uniform(60, w * 0.5), y0 + rng.uniform(60, h * 0.3)
    if rng.random() < 0.35:
        a = np.random.default_rng(rng.randrange(1 << 30)).random((24, 24))
        img = Image.fromarray((a * 255).astype(np.uint8)).resize((200, 200), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        img.filter(ImageFilter.GaussianBlur(rng.uniform(1, 6))).save(buf, "PNG")
        page.insert_image(pymupdf.Rect(x0, y0, x1, y1), stream=buf.getvalue())
        return
    for _ in range(rng.randint(3, 25)):
        p0 = pymupdf.Point(rng.uniform(x0, x1), rng.uniform(y0, y1))
        p1 = pymupdf.Point(rng.uniform(x0, x1), rng.uniform(y0, y1))
        k = rng.random()
        col = (rng.uniform(0, 0.6),) * 3
        if k < 0.4:
            page.draw_line(p0, p1, color=col, width=rng.uniform(0.3, 2.5))
        elif k < 0.6:
            page.draw_circle(p0, rng.uniform(2, 40), color=col, width=rng.uniform(0.3, 2),
                             fill=col if rng.random() < 0.3 else None)
        elif k < 0.8:
            page.draw_bezier(p0, pymupdf.Point(rng.uniform(x0, x1), rng.uniform(y0, y1)),
                             pymupdf.Point(rng.uniform(x0, x1), rng.uniform(y0, y1)), p1, color=col,
                             width=rng.uniform(0.3, 2))
        else:
            page.draw_rect(pymupdf.Rect(p0, p1).normalize(), color=col, width=0.5,
                           fill=(rng.uniform(0.5, 0.95),) * 3 if rng.random() < 0.5 else None)


def scan_it(gray: np.ndarray, rng: random.Random, other: np.ndarray | None, turns: int) -> np.ndarray:
    """A scan of the page: paper tone, bleed-through, skew, blur, noise, salt and pepper, JPEG; turned ``turns``
    quarter turns counter-clockwise."""
    paper = rng.uniform(200, 255)
    page = gray.astype(np.float32) * (paper / 255.0)
    h, w = page.shape
    if other is not None and rng.random() < 0.5:
        o = Image.fromarray(other).resize((w, h)).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        o = np.asarray(o.filter(ImageFilter.GaussianBlur(rng.uniform(1, 3))), dtype=np.float32)
        page -= (255.0 - o) / 255.0 * rng.uniform(5, 40)
    im = Image.fromarray(np.clip(page, 0, 255).astype(np.uint8))
    angle = rng.uniform(-10, 10) if rng.random() < 0.85 else 0.0
    if angle:
        im = im.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=int(paper))
    if rng.random() < 0.3:
        im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    nrng = np.random.default_rng(rng.randrange(1 << 30))
    a = np.asarray(im, dtype=np.float32) + nrng.normal(0, rng.uniform(2, 40), (h, w))
    sp = rng.uniform(0, 0.005)
    mask = nrng.random(a.shape) < sp
    a[mask] = np.where(nrng.random(int(mask.sum())) < 0.5, 0, 255)
    buf = io.BytesIO()
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=rng.randint(20, 85))
    out = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"))
    return np.ascontiguousarray(np.rot90(out, turns))


def readings(gray: np.ndarray) -> list[tuple[int, np.ndarray, dict]]:
    """Both readings of a scan as scan preparation makes them (cleaned ink, skew searched on each axis, the ink
    turned and sheared, the estimator's fragments): (turned clockwise 0 or 90, ink, detail)."""
    weak = clean_ink(gray)[0]
    if not weak.any():
        return []
    a_rows = search_skew(*profiles(weak))[0]
    a_cols = -search_skew(*column_profiles(weak))[0]
    out = []
    for axis_rows, turned, angle in ((True, 0, a_rows), (False, 90, a_cols)):
        lines = straighten(weak, axis_rows, angle)
        detail = _analyse(np.broadcast_to(np.uint8(0), lines.shape), ink=lines)[1]
        out.append((turned, lines, detail))
    return out


def dataset(n_pages: int, seed: int, log: bool = True, big_cjk: float = 0.0) -> tuple[np.ndarray, np.ndarray, list]:
    """Patches [N, H*W] (uint8 quarters of ink), labels [N] (turn class) and per page (turns, script, per
    reading (turned, patches))."""
    rng = random.Random(seed)
    src = Source()
    xs, ys, pages = [], [], []
    prev = None
    t0 = time.perf_counter()
    for i in range(n_pages):
        gray, script = make_page(src, rng, big_cjk)
        turns = rng.randrange(4)
        scanned = scan_it(gray, rng, prev, turns)
        prev = gray
        need = 90 * turns  # clockwise rotation that makes the scan upright
        page_readings = []
        for turned, lines, detail in readings(scanned):
            p = orient.line_patches(lines, detail)
            page_readings.append((turned, p))
            if len(p):
                xs.append(np.rint(p * 4).astype(np.uint8))
                ys.append(np.full(len(p), ((turned - need) // 90) % 4, dtype=np.int64))
        pages.append((need, script, page_readings))
        if log and (i + 1) % 100 == 0:
            print(f"  {i + 1} pages, {sum(len(y) for y in ys)} patches, {time.perf_counter() - t0:.0f} s", flush=True)
    x = np.concatenate(xs) if xs else np.zeros((0, orient.PATCH_H * orient.PATCH_W), np.uint8)
    y = np.concatenate(ys) if ys else np.zeros(0, np.int64)
    return x, y, pages


def train(x: np.ndarray, y: np.ndarray, channels: list[int], hidden: list[int], epochs: int, seed: int):
    """Fit the classifier on the patches and their 180-degree turns: 3x3 convolutions of ``channels`` (each
    followed by ReLU and a 2x2 max-pool), dense layers of ``hidden``, four outputs. Returns the convolutions and
    dense layers as orient.save_model takes them, and the torch network itself."""
    import torch
    from torch import nn

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    hp, wp = orient.PATCH_H, orient.PATCH_W
    flipped = x.reshape(-1, hp, wp)[:, ::-1, ::-1].reshape(len(x), -1)
    xa = torch.from_numpy(np.concatenate([x, flipped]).astype(np.float32) / 4).reshape(-1, 1, hp, wp)
    ya = torch.from_numpy(np.concatenate([y, (y + 2) % 4]))

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            ch = [1, *channels]
            self.convs = nn.ModuleList(nn.Conv2d(ch[i], ch[i + 1], 3, padding=1) for i in range(len(channels)))
            k = 2 ** len(channels)
            sizes = [(hp // k) * (wp // k) * ch[-1], *hidden, 4]
            self.dense = nn.ModuleList(nn.Linear(sizes[i], sizes[i + 1]) for i in range(len(sizes) - 1))

        def forward(self, t):
            for conv in self.convs:
                t = nn.functional.max_pool2d(torch.relu(conv(t)), 2)
            t = t.permute(0, 2, 3, 1).flatten(1)  # rows x columns x channels, as orient reads it
            for i, lin in enumerate(self.dense):
                t = lin(t)
                if i < len(self.dense) - 1:
                    t = torch.relu(t)
            return t

    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3, weight_decay=1e-5)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, epochs))
    gen = torch.Generator().manual_seed(seed)
    for ep in range(epochs):
        perm = torch.randperm(len(xa), generator=gen)
        total, correct = 0.0, 0
        for s in range(0, len(xa), 256):
            idx = perm[s : s + 256]
            out = net(xa[idx])
            loss = nn.functional.cross_entropy(out, ya[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            correct += int((out.argmax(1) == ya[idx]).sum())
        sched.step()
        print(f"  epoch {ep + 1}: loss {total / len(xa):.3f}, patch accuracy {correct / len(xa):.3f}", flush=True)
    convs = [(c.weight.detach().permute(2, 3, 1, 0).reshape(-1, c.out_channels).numpy().copy(),
              c.bias.detach().numpy().copy()) for c in net.convs]
    dense = [(lin.weight.detach().numpy().T.copy(), lin.bias.detach().numpy().copy()) for lin in net.dense]
    return convs, dense, net


def evaluate(model: orient.OrientModel, pages: list, margin: float) -> dict:
    """Per page: the rotation with the best summed log-likelihood over both readings, undecided when it beats
    the next by less than ``margin``."""
    res: dict = {}
    for need, script, rd in pages:
        scores, n = orient.turn_scores(model, rd)
        order = np.argsort(scores)[::-1]
        decided = n > 0 and scores[order[0]] - scores[order[1]] >= margin
        key = (script, need)
        r = res.setdefault(key, [0, 0, 0])
        r[0] += bool(decided and 90 * order[0] == need)
        r[1] += bool(decided and 90 * order[0] != need)
        r[2] += 1
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=1000)
    ap.add_argument("--val-pages", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--channels", default="8,16", help="channels of the 3x3 convolutions (none: an MLP)")
    ap.add_argument("--hidden", default="64", help="sizes of the hidden dense layers")
    ap.add_argument("--big-cjk", type=float, default=0.0,
                    help="share of CJK pages made slides of large glyphs (BENCHMARKS 9.0e: 0.3 did not help)")
    ap.add_argument("--save-data", default="", help="keep the rendered patches in this .npz (to refit fast)")
    ap.add_argument("--load-data", default="", help="refit on patches kept by --save-data")
    ap.add_argument("--out", default=str(orient.WEIGHTS))
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.load_data:
        with np.load(args.load_data, allow_pickle=True) as z:
            x, y, val = z["x"], z["y"], list(z["val"])
    else:
        print(f"rendering {args.pages} training pages (seed {args.seed})", flush=True)
        x, y, _ = dataset(args.pages, args.seed, big_cjk=args.big_cjk)
        print(f"rendering {args.val_pages} validation pages (seed {args.seed + 1000})", flush=True)
        _, _, val = dataset(args.val_pages, args.seed + 1000, log=False, big_cjk=args.big_cjk)
        if args.save_data:
            np.savez(args.save_data, x=x, y=y, val=np.array(val, dtype=object))
    channels = [int(v) for v in args.channels.split(",") if v]
    hidden = [int(v) for v in args.hidden.split(",") if v]
    print(f"training on {len(x)} patches (x2 turned), channels {channels}, hidden {hidden}", flush=True)
    convs, dense, _ = train(x, y, channels, hidden, args.epochs, args.seed)
    meta = {"pages": args.pages, "seed": args.seed, "epochs": args.epochs, "channels": channels, "hidden": hidden,
            "patches": int(len(x)), "made_by": "bench/train_orientation.py"}
    if args.big_cjk:  # (only then: the default run writes the shipped file byte for byte)
        meta["big_cjk"] = args.big_cjk
    orient.save_model(Path(args.out), convs, dense, meta)
    model = orient.load_model(Path(args.out))
    for margin in (0.0, 2.0, 4.0, 8.0):
        res = evaluate(model, val, margin)
        ok = sum(r[0] for r in res.values())
        bad = sum(r[1] for r in res.values())
        n = sum(r[2] for r in res.values())
        per = ", ".join(f"{s} {a}: {r[0]}/{r[2]}" for (s, a), r in sorted(res.items()))
        print(f"validation, margin {margin}: right {ok}/{n}, wrong {bad}; {per}")
    print(f"wrote {args.out} ({Path(args.out).stat().st_size} bytes) in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
