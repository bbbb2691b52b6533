"""Measure scan preparation (deepocr_cli/planning/scan.py): blank pages, orientation, skew, and their cost.

Usage: python bench/scan_prep.py [CORPUS] [--variants N] [--seed S] [--blank N] [--big-pdf PAGES] [--quick]
       [--baseline OTHER/deepocr_cli/planning/scan.py [--baseline-weights OTHER/.../orient_weights.npz]] [--pdf]

Test set, all at the text estimator's resolution (long side WORK_LONG_SIDE, ~120 dpi on A4):
- text pages: every page of the benchmark corpus (CORPUS/public/manifest.jsonl, default /tmp/deepocr-corpus; built
  by ../shared/corpus/build_corpus.sh), the project's own sample pages (python -m deepocr_cli.sample_docs), and
  pages of Chinese and Japanese text from the corpus's reference texts set in MuPDF's CJK fonts; plus the hard
  cases for blank detection: light-grey print (60-75% gray), 6-pt print, a page holding only a page number, a page
  holding one short line;
- each text page made into N scans (the skew truth of a page that is a skewed scan already, such as the corpus's
  scans, is its own measured skew plus the one applied) per rotation (0, 90, 180, 270 degrees counter-clockwise): skewed by a random
  angle in +-10 degrees, paper tone 215-255, Gaussian noise sigma 5-40, salt-and-pepper (0-0.4% of pixels), JPEG
  artefacts (quality 25-75) and, on half of them, bleed-through of another page (mirrored, blurred, 10-35 gray
  levels), a dark scanner border or punch holes;
- blank scans made the same way from a white page (noise, bleed-through, punch holes, dark borders).

Prints the blank, orientation (per angle and script) and skew figures, the ms per page of each step on one core;
with --pdf, the blank figures again with the hard cases' and the blank scans read as a run reads a scanned PDF
of JPEG or of PNG (Flate) pages (drawn by MuPDF, and decoded from each page's image); and, with --big-pdf, the time to convert a PDF of that many
blank pages end to end (tiny random checkpoint; the model is never called) beside the time to render its pages
(the baseline run as main runs: every page rendered for its verdict, every checkpoint synced).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pymupdf  # noqa: E402
from PIL import Image, ImageDraw, ImageFilter  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepocr_cli.planning import orient, scan  # noqa: E402
from deepocr_cli.planning.estimate import _render_gray  # noqa: E402
from deepocr_cli.planning.image_estimate import _analyse, ink_mask  # noqa: E402
from deepocr_cli.planning.textest import WORK_LONG_SIDE  # noqa: E402

A4 = (595.0, 842.0)


# --------------------------------------------------------------------------- clean pages


def _pdf_pages(path: Path, lang: str, limit: int | None = None) -> list[tuple[str, str, np.ndarray]]:
    out = []
    with pymupdf.open(path) as doc:
        for i, page in enumerate(doc):
            if limit is not None and i >= limit:
                break
            out.append((f"{path.stem}#{i + 1}", lang, _render_gray(page).copy()))
    return out


def corpus_pages(corpus: Path) -> list[tuple[str, str, np.ndarray]]:
    """(name, script, gray) of every page of the corpus's PDFs and images; script "cjk" or "latin"."""
    manifest = corpus / "public" / "manifest.jsonl"
    langs: dict[str, str] = {}
    for line in manifest.read_text().splitlines():
        row = json.loads(line)
        langs[row["file"]] = "cjk" if row.get("lang") in ("zh", "ja") or (row.get("cjk_chars") or 0) > 100 else "latin"
    pages = []
    for rel, lang in sorted(langs.items()):
        path = corpus / rel
        if path.suffix == ".pdf":
            pages += _pdf_pages(path, lang)
        else:
            with Image.open(path) as im:
                pages.append((path.stem, lang, scan.work_gray(im).copy()))
    return pages


def sample_pages() -> list[tuple[str, str, np.ndarray]]:
    """The project's own sample documents (deepocr_cli.sample_docs), one gray page each."""
    from deepocr_cli.sample_docs import make_sample_docs

    pages = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in make_sample_docs(Path(tmp)):
            if path.suffix == ".pdf":
                pages += [(f"sample-{n}", s, g) for n, s, g in _pdf_pages(path, "latin")]
            else:
                with Image.open(path) as im:
                    pages.append((f"sample-{path.stem}", "latin", scan.work_gray(im).copy()))
    return pages


def _page(paras: list[tuple[str, float, str, tuple[float, float, float]]], size=A4) -> np.ndarray:
    """A rendered page: (text, font size, font, color) per paragraph, set top-down in one column until full."""
    doc = pymupdf.open()
    page = doc.new_page(width=size[0], height=size[1])
    y = 60.0
    for text, fs, font, color in paras:
        if y > size[1] - 80:
            break
        tw = pymupdf.TextWriter(page.rect, color=color)
        left = tw.fill_textbox(pymupdf.Rect(60, y, size[0] - 60, size[1] - 50), text, font=pymupdf.Font(font),
                               fontsize=fs)
        tw.write_text(page)
        y = tw.last_point.y + 1.6 * fs
        if left:
            break
    gray = _render_gray(page).copy()
    doc.close()
    return gray


def cjk_pages(corpus: Path) -> list[tuple[str, str, np.ndarray]]:
    """Chinese and Japanese reference texts of the corpus set as plain pages in MuPDF's CJK fonts."""
    pages = []
    for gt in sorted((corpus / "public" / "gt").glob("*.txt")):
        text = gt.read_text(errors="ignore")
        cjk = sum(1 for ch in text if "\u3040" <= ch <= "\u9fff")
        if cjk < 300:
            continue
        font = "japan" if gt.name.startswith(("ja", "dense-ja")) else "china-s"
        paras = [p.strip() for p in text.split("\n\n") if p.strip()]
        body = [("\u3000\u3000" + p.replace("\n", ""), 10.5, font, (0, 0, 0)) for p in paras]
        pages.append((f"cjk-{gt.stem}", "cjk", _page(body)))
    return pages


def hard_pages(prose: str) -> list[tuple[str, str, np.ndarray]]:
    """Pages blank detection must not call blank: light-grey print, 6-pt print, a lone page number, one line."""
    paras = [p for p in prose.split("\n\n") if p.strip()][:12]
    out = []
    for g in (0.6, 0.68, 0.75):
        out.append((f"grey{int(g * 100)}", "latin", _page([(p, 10, "helv", (g, g, g)) for p in paras])))
    out.append(("six-pt", "latin", _page([(p, 6, "tiro", (0, 0, 0)) for p in paras * 3])))
    doc = pymupdf.open()
    page = doc.new_page(width=A4[0], height=A4[1])
    page.insert_text((A4[0] / 2 - 6, A4[1] - 40), "17", fontsize=10, fontname="helv")
    out.append(("page-number", "none", _render_gray(page).copy()))
    page = doc.new_page(width=A4[0], height=A4[1])
    page.insert_text((72, 120), "Continued on the next page.", fontsize=11, fontname="tiro")
    out.append(("short-line", "none", _render_gray(page).copy()))
    doc.close()
    return out


# --------------------------------------------------------------------------- scanning


def degrade(gray: np.ndarray, rng: random.Random, other: np.ndarray | None, angle: float, turns: int) -> np.ndarray:
    """A scan of ``gray``: skewed by ``angle`` degrees counter-clockwise, turned ``turns`` x 90 degrees
    counter-clockwise, with paper tone, bleed-through of ``other``, a border or holes, noise and JPEG."""
    paper = rng.uniform(215, 255)
    page = gray.astype(np.float32) * (paper / 255.0)
    h, w = page.shape
    if other is not None:  # bleed-through: the other side, mirrored, blurred, faint
        o = Image.fromarray(other).resize((w, h)).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        o = np.asarray(o.filter(ImageFilter.GaussianBlur(rng.uniform(1.2, 2.5))), dtype=np.float32)
        page -= (255.0 - o) / 255.0 * rng.uniform(10, 35)
    im = Image.fromarray(np.clip(page, 0, 255).astype(np.uint8))
    if angle:
        im = im.rotate(angle, resample=Image.Resampling.BICUBIC, expand=False, fillcolor=int(paper))
    extra = rng.random()
    if extra < 0.2:  # punch holes along the left edge, dark as the scanner lid
        d = ImageDraw.Draw(im)
        r = w * 0.02
        for fy in (0.3, 0.7) if rng.random() < 0.5 else (0.15, 0.5, 0.85):
            cx, cy = w * 0.05, h * fy
            d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=rng.randint(10, 60))
    elif extra < 0.4:  # a dark scanner border on one or two sides
        d = ImageDraw.Draw(im)
        bw = int(w * rng.uniform(0.01, 0.04))
        d.rectangle((0, 0, bw, h), fill=rng.randint(0, 50))
        if rng.random() < 0.5:
            d.rectangle((0, h - bw, w, h), fill=rng.randint(0, 50))
    a = np.asarray(im, dtype=np.float32)
    a = a + np.random.default_rng(rng.randrange(1 << 30)).normal(0, rng.uniform(5, 40), a.shape)
    sp = rng.uniform(0, 0.004)
    if sp:
        nrng = np.random.default_rng(rng.randrange(1 << 30))
        mask = nrng.random(a.shape) < sp
        a[mask] = np.where(nrng.random(int(mask.sum())) < 0.5, 0, 255)
    a8 = np.clip(a, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a8).save(buf, "JPEG", quality=rng.randint(25, 75))
    out = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"))
    return np.ascontiguousarray(np.rot90(out, turns))


# --------------------------------------------------------------------------- measuring


def _timed(fn, *args, **kw):
    """Result and CPU milliseconds of this process (one thread: numpy runs single-threaded here), which a
    shared machine's other load disturbs far less than wall time."""
    t0 = time.process_time()
    r = fn(*args, **kw)
    return r, (time.process_time() - t0) * 1000


def _load_baseline(path: str):
    """The scan module of another checkout (e.g. main's deepocr_cli/planning/scan.py), run beside this one on the
    same scans; it imports the estimator of this checkout, which scan preparation leaves unchanged."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("scan_baseline", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["scan_baseline"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def _modules(args: argparse.Namespace) -> dict:
    if args.baseline:
        base = _load_baseline(args.baseline)
        if args.baseline_weights:  # the baseline reads its orientation with these weights (e.g. main's)
            model = orient.load_model(Path(args.baseline_weights))
            base.shipped_model = lambda: model
        return {"baseline": base, "this": scan}
    return {"this": scan}


def run(args: argparse.Namespace) -> dict:
    modules = _modules(args)
    analysers = {label: mod.analyse_scan for label, mod in modules.items()}
    rng = random.Random(args.seed)
    corpus = Path(args.corpus)
    text = corpus_pages(corpus) + sample_pages() + cjk_pages(corpus)
    prose = "\n\n".join(
        p.read_text(errors="ignore") for p in sorted((corpus / "public" / "gt").glob("*.txt"))
        if p.name.startswith(("manual-r", "de-l2kurz"))
    )
    hard = hard_pages(prose)
    if args.quick:
        text = text[:: max(1, len(text) // 12)]
    # a page counts for orientation when the estimator finds enough text on it upright (a chart with three
    # labels, a chemical drawing or a photo has no lines to tell up from down by)
    white = np.full_like(text[0][2], 255)
    results = {name: _new_result() for name in analysers}
    hard_gray = {name: gray for name, _script, gray in hard}
    pdf_scans: list[tuple[str, bool, np.ndarray]] = []  # (name, blank, scan) for --pdf
    for name, script, gray in text + hard:
        upright_lines = _analyse(gray)[0].lines
        # a real scan in the corpus is skewed already: the truth is its own skew plus the one applied
        clean = scan.analyse_scan(gray)
        base = clean.skew if clean.rotation == 0 else 0.0
        for turns in (0, 1, 2, 3):
            for _ in range(args.variants):
                angle = rng.uniform(-10, 10)
                other = text[rng.randrange(len(text))][2] if rng.random() < 0.5 else None
                g = degrade(gray, rng, other, angle, turns)
                if args.pdf and (gray is hard_gray.get(name)):
                    pdf_scans.append((f"{name} turn{turns * 90}", False, g))
                for label, fn in analysers.items():
                    _score_text(results[label], fn(g), name, script, turns, upright_lines, base, angle)
    for _ in range(args.blank):
        turns = rng.randrange(4)
        other = text[rng.randrange(len(text))][2] if rng.random() < 0.6 else None
        g = degrade(white, rng, other, rng.uniform(-10, 10), turns)
        if args.pdf:
            pdf_scans.append((f"blank{len(pdf_scans)}", True, g))
        for label, fn in analysers.items():
            results[label]["blank_total"] += 1
            results[label]["blank_found"] += fn(g).blank
    # cost, one core, on the text pages turned and skewed: the estimator's ink (shared with the text estimate),
    # the ink cleaned and measured for blank pages, and all of it (the skew and axis search, the turned page's
    # analysis and the up/down score on top); best of three runs of each page
    for _name, _script, gray in text:
        g = degrade(gray, rng, None, rng.uniform(-10, 10), rng.randrange(4))
        ink = ink_mask(g)
        for label, fn in analysers.items():
            res = results[label]
            res["ms"]["ink"].append(min(_timed(ink_mask, g)[1] for _ in range(3)))
            res["ms"]["clean"].append(min(_timed(modules[label].clean_ink, g, ink)[1] for _ in range(3)))
            res["ms"]["all"].append(min(_timed(fn, g)[1] for _ in range(3)))
    for res in results.values():
        res["pages"] = {"text": len(text), "hard": len(hard)}
    if args.pdf:
        for label, res in results.items():
            res["pdf"] = through_pdf(pdf_scans, modules[label], fast=label == "this")
    return results


def through_pdf(scans: list[tuple[str, bool, np.ndarray]], mod, fast: bool) -> dict:
    """The blank verdicts on scans read as a run reads a scanned PDF (each scan one page: a JPEG of quality 90, or
    a PNG, which PDF stores Flate-compressed): drawn by MuPDF at the estimator's resolution, and (``fast``) decoded
    from the page's own image (deepocr_cli.inputs.scanpage)."""
    from deepocr_cli.inputs.render import open_document
    from deepocr_cli.run.scanprep import analysis_gray

    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("JPEG", "PNG"):
            path = Path(tmp) / f"scans-{fmt}.pdf"
            doc = pymupdf.open()
            for _name, _blank, g in scans:
                h, w = g.shape
                buf = io.BytesIO()
                Image.fromarray(g).save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
                pw, ph = (A4[0], A4[0] * h / w) if h >= w else (A4[1], A4[1] * h / w)
                doc.new_page(width=pw, height=ph).insert_image(pymupdf.Rect(0, 0, pw, ph), stream=buf.getvalue(),
                                                               keep_proportion=False)
            doc.save(path)
            doc.close()
            with open_document(path) as reader:
                for way in ("render", "image") if fast else ("render",):
                    false, found, total = [], 0, 0
                    for i, (name, blank, _g) in enumerate(scans):
                        v = mod.analyse_scan(analysis_gray(reader, i, None, fast=way == "image"))
                        if blank:
                            total += 1
                            found += v.blank
                        elif v.blank:
                            false.append(name)
                    out[f"{fmt} page, {way}"] = {"false_blanks": false, "hard_scans": len(scans) - total,
                                                 "blank_found": found, "blank_total": total}
    return out


def _new_result() -> dict:
    return {"blank_false": [], "blank_found": 0, "blank_total": 0, "orient": {}, "skew_err": [],
            "ms": {"ink": [], "clean": [], "all": []}, "undecided": 0, "wrong": [], "n_text": 0,
            "undecided_names": []}


def _score_text(res: dict, v, name: str, script: str, turns: int, upright_lines: int, base: float,
                angle: float) -> None:
    res["n_text"] += 1
    if v.blank:
        res["blank_false"].append(f"{name} turn{turns * 90}")
    if script == "none" or upright_lines < 8:
        return
    want = (90 * turns) % 360
    key = (script, want)
    ok = v.rotation == want
    res["orient"].setdefault(key, [0, 0])
    res["orient"][key][0] += ok
    res["orient"][key][1] += 1
    if v.orientation == "undecided":
        res["undecided"] += 1
        res["undecided_names"].append(f"{name} turn{want}")
    elif not ok:
        res["wrong"].append(f"{name} turn{want} -> {v.rotation} ({v.orientation_score:+.2f})")
    if ok:
        res["skew_err"].append(abs(v.skew - (base - angle)))


def big_blank_pdf(pages: int, modules: dict) -> dict:
    """Convert a PDF of blank scanned pages end to end (tiny random checkpoint), beside rendering it alone; once
    with each scan module's verdict (``modules``: label -> module)."""
    from deepocr_cli.engine import load_engine
    from deepocr_cli.inputs.render import open_document
    from deepocr_cli.model import write_random_checkpoint
    from deepocr_cli.options import ConvertOptions
    from deepocr_cli.run import scanprep
    from deepocr_cli.run.convert import convert
    from deepocr_cli.run.state import PartialPages

    rng = np.random.default_rng(5)
    out: dict = {"pages": pages}
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        pdf = tmpd / "blank.pdf"
        eight = pymupdf.open()
        for _ in range(8):  # eight different noisy blank scans (100 dpi JPEG), repeated
            a = np.clip(rng.normal(240, 12, (1169, 826)), 0, 255).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(a).save(buf, "JPEG", quality=60)
            eight.new_page(width=A4[0], height=A4[1]).insert_image(pymupdf.Rect(0, 0, *A4), stream=buf.getvalue())
        doc = pymupdf.open()
        while doc.page_count < pages:
            doc.insert_pdf(eight, to_page=min(8, pages - doc.page_count) - 1)
        doc.save(pdf)
        doc.close()
        t0, c0 = time.perf_counter(), time.process_time()
        with open_document(pdf) as reader:
            for i in range(reader.page_count):
                reader.render(i, (826, 1169))
        out["render_s"] = round(time.perf_counter() - t0, 2)
        out["render_cpu_s"] = round(time.process_time() - c0, 2)
        ckpt = tmpd / "ckpt"
        write_random_checkpoint(ckpt)
        calls = []

        def factory():
            eng = load_engine(str(ckpt), device="cpu")
            real = eng.engine_request

            def counted(*a, **k):  # every sequence the model is asked for goes through it
                calls.append(1)
                return real(*a, **k)

            eng.engine_request = counted
            return eng

        engine = factory()  # loaded before the clock starts: the run is timed, not the checkpoint's loading
        real_verdict, real_image, real_append = scanprep.analyse_scan, scanprep.scan_page_image, PartialPages.append

        def synced(self, page, sync=True):  # noqa: ANN001 - main syncs every page's checkpoint
            real_append(self, page, True)

        # the baseline as main runs it (every page rendered for its verdict, every checkpoint synced); this
        # checkout as it runs, and once more with its pages rendered (the path of a PDF page that is not one JPEG)
        runs = [(label, mod, label != "baseline") for label, mod in modules.items()]
        runs.append(("this, rendered", modules["this"], False))
        try:
            for label, mod, fast in runs:
                scanprep.analyse_scan = mod.analyse_scan
                scanprep.scan_page_image = real_image if fast else (lambda *a, **k: None)
                PartialPages.append = real_append if label != "baseline" else synced
                calls.clear()
                t0, c0 = time.perf_counter(), time.process_time()
                report = convert([pdf], ConvertOptions(model=str(ckpt), output_dir=tmpd / f"out-{len(out)}",
                                                       mode="tiny", deep=False), engine_factory=lambda: engine)
                out[label] = {"convert_s": round(time.perf_counter() - t0, 2),
                              "convert_cpu_s": round(time.process_time() - c0, 2), "model_calls": len(calls),
                              "status": report.files[0].status, "blank_pages": report.files[0].blank_pages}
        finally:
            scanprep.analyse_scan, scanprep.scan_page_image, PartialPages.append = real_verdict, real_image, real_append
    return out


def _report(r: dict, args: argparse.Namespace) -> None:
    print(f"text pages: {r['pages']['text']} (+ {r['pages']['hard']} hard cases), {args.variants} scans per page "
          f"and rotation; blank scans: {r['blank_total']}")
    n_text = r.get("n_text", 0)
    print(f"blank: false blanks {len(r['blank_false'])} of {n_text} text scans {r['blank_false'][:10]}; "
          f"blank scans called blank {r['blank_found']}/{r['blank_total']} "
          f"({100 * r['blank_found'] / max(r['blank_total'], 1):.1f}%)")
    tot = [0, 0]
    for (script, want), (ok, n) in sorted(r["orient"].items()):
        print(f"orientation {script:5s} {want:3d}: {ok}/{n} upright ({100 * ok / n:.1f}%)")
        tot[0] += ok
        tot[1] += n
    print(f"orientation all: {tot[0]}/{tot[1]} ({100 * tot[0] / max(tot[1], 1):.1f}%); undecided (left as is) "
          f"{r['undecided']}; wrong: {len(r['wrong'])} {r['wrong'][:8]}")
    print(f"undecided: {r['undecided_names'][:40]}")
    e = sorted(r["skew_err"])
    if e:
        within = sum(1 for x in e if x <= 0.5) / len(e)
        print(f"skew: |error| <= 0.5 deg on {100 * within:.1f}% of {len(e)} upright-turned scans; median "
              f"{statistics.median(e):.2f}, p95 {e[int(0.95 * (len(e) - 1))]:.2f}, max {e[-1]:.2f} deg")
    for way, q in r.get("pdf", {}).items():
        print(f"blank through a PDF ({way}): false blanks {len(q['false_blanks'])} of {q['hard_scans']} hard-case "
              f"scans {q['false_blanks'][:10]}; blank scans called blank {q['blank_found']}/{q['blank_total']} "
              f"({100 * q['blank_found'] / max(q['blank_total'], 1):.1f}%)")
    ms = r["ms"]
    print("CPU ms/page, one core, best of 3 (median / p90): "
          + ", ".join(f"{k} {statistics.median(v):.1f} / {sorted(v)[int(0.9 * (len(v) - 1))]:.1f}"
                      for k, v in ms.items() if v))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", nargs="?", default="/tmp/deepocr-corpus")
    ap.add_argument("--variants", type=int, default=2, help="scans per page and rotation")
    ap.add_argument("--blank", type=int, default=400, help="blank scans")
    ap.add_argument("--seed", type=int, default=18)
    ap.add_argument("--big-pdf", type=int, default=0, help="pages of the blank PDF converted end to end")
    ap.add_argument("--quick", action="store_true", help="a twelfth of the text pages")
    ap.add_argument("--baseline", default="", help="scan.py of another checkout, measured beside this one")
    ap.add_argument("--baseline-weights", default="", help="orientation weights (.npz) the baseline reads with")
    ap.add_argument("--pdf", action="store_true", help="also read the hard cases and blank scans as a scanned PDF")
    args = ap.parse_args()
    t0 = time.perf_counter()
    results = run(args) if args.variants or args.blank else {}
    print(f"machine: {os.uname().machine}, python {sys.version.split()[0]}, PyMuPDF {pymupdf.__version__}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, long side {WORK_LONG_SIDE} px, seed {args.seed}")
    for label, r in results.items():
        print(f"== {label}")
        _report(r, args)
    if args.big_pdf:
        print(f"blank PDF end to end: {big_blank_pdf(args.big_pdf, _modules(args))}")
    print(f"bench wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
