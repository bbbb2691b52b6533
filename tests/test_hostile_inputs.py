"""Hostile inputs through the CLI on the real libraries (PyMuPDF, Pillow, the model code), no mocks: each
damaged or odd file is that file's failure (or a converted file with warnings), never the batch's.

Files made here, all in one tree with two valid documents: a lying /Count, a page-tree cycle, a truncated PDF,
a 200-byte stub, a broken xref, a 20,000-pt page, a PDF embedding a 400-megapixel image, wrong extensions both
ways, a text file named .pdf, a 0-byte file, a file that vanishes between discovery and opening, and (in a
subprocess without root's rights) an unreadable file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Any

import pymupdf
import pytest
from pdf_helpers import hand_pdf
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from deepocr_cli import boundary
from deepocr_cli.cli import app


def pdf_bytes(pages: int = 2, width: float = 595, height: float = 842) -> bytes:
    doc = pymupdf.open()
    for i in range(pages):
        page = doc.new_page(width=width, height=height)
        page.insert_textbox(pymupdf.Rect(50, 50, min(width, 545), min(height, 800)),
                            f"Page {i + 1}. " + "Words on a page. " * 20, fontsize=11)
    data = doc.tobytes()
    doc.close()
    return data


def _stream(data: bytes, extra: bytes = b"") -> bytes:
    return b"<<" + extra + b"/Length %d>>stream\n" % len(data) + data + b"\nendstream"


def cycle_pdf() -> bytes:
    """Page 1 is fine; the page tree also lists itself as its own kid."""
    page = b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]/Contents 4 0 R/Resources<<>>>>"
    return hand_pdf([b"<</Type/Catalog/Pages 2 0 R>>", b"<</Type/Pages/Kids[3 0 R 2 0 R]/Count 2>>", page,
                     _stream(b"0 0 0 rg 72 600 300 100 re f")])


def lost_contents_pdf() -> bytes:
    """Page 1 draws a box; page 2's /Contents points at an object the file does not have."""
    box = _stream(b"0 0 0 rg 72 600 300 100 re f")
    return hand_pdf([b"<</Type/Catalog/Pages 2 0 R>>", b"<</Type/Pages/Kids[3 0 R 4 0 R]/Count 2>>",
                     b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]/Contents 5 0 R/Resources<<>>>>",
                     b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]/Contents 9 0 R/Resources<<>>>>", box])


def bomb_pdf(side: int = 20_000) -> bytes:
    """One page showing a side x side grey image (400 MP by default) that compresses to a few hundred KB."""
    z = zlib.compressobj(9)
    row = bytes(side)
    img = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    content = b"q 595 0 0 842 0 0 cm /Im1 Do Q"
    return hand_pdf([
        b"<</Type/Catalog/Pages 2 0 R>>", b"<</Type/Pages/Kids[3 0 R]/Count 1>>",
        b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]/Contents 4 0 R/Resources<</XObject<</Im1 5 0 R>>>>>>",
        _stream(content),
        _stream(img, b"/Type/XObject/Subtype/Image/Width %d/Height %d/ColorSpace/DeviceGray/BitsPerComponent 8"
                     b"/Filter/FlateDecode" % (side, side)),
    ])


def truncated_before_page_2(pdf: bytes) -> bytes:
    """The file cut where page 2's object starts: page 1 is whole, page 2 and the xref are gone."""
    doc = pymupdf.open(stream=pdf)
    xref = doc[1].xref
    doc.close()
    return pdf[: pdf.index(b"\n%d 0 obj" % xref) + 1]


def png_bytes() -> bytes:
    import io

    img = Image.new("RGB", (400, 300), "white")
    ImageDraw.Draw(img).text((20, 20), "An image page", fill="black")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def make_tree(root: Path) -> Path:
    root.mkdir(parents=True)
    good = pdf_bytes(2)
    (root / "good.pdf").write_bytes(good)
    (root / "good.png").write_bytes(png_bytes())
    (root / "count.pdf").write_bytes(re.sub(rb"/Count 2\b", b"/Count 999999", good))
    (root / "cycle.pdf").write_bytes(cycle_pdf())
    (root / "truncated.pdf").write_bytes(truncated_before_page_2(good))
    (root / "stub.pdf").write_bytes(good[:200])
    (root / "lost-contents.pdf").write_bytes(lost_contents_pdf())
    (root / "xref.pdf").write_bytes(good.replace(b"xref", b"xxxx").replace(b"startxref", b"startxxxx"))
    (root / "huge-page.pdf").write_bytes(pdf_bytes(1, 20_000, 20_000))
    (root / "bomb.pdf").write_bytes(bomb_pdf())
    (root / "png-named.pdf").write_bytes(png_bytes())
    (root / "pdf-named.jpg").write_bytes(good)
    (root / "text.pdf").write_text("This is not a PDF at all.\n")
    (root / "empty.pdf").write_bytes(b"")
    (root / "vanish.pdf").write_bytes(good)
    return root


@pytest.fixture(scope="module")
def converted(scripted_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = make_tree(tmp_path_factory.mktemp("hostile") / "docs")

    def vanish(stage: str, source: Path) -> None:  # a real deletion, between discovery and opening
        if stage == "open" and source.name == "vanish.pdf":
            source.unlink()

    args = ["convert", str(root), "--model", str(scripted_checkpoint), "--max-new-tokens", "32",
            "--max-mode", "tiny", "--json"]
    boundary.fault_hook = vanish
    try:
        first = CliRunner().invoke(app, args)
    finally:
        boundary.fault_hook = None
    rerun = CliRunner().invoke(app, args)
    files = {Path(f["source"]).name: f for f in json.loads(first.stdout)["files"]}
    return {"root": root, "result": first, "files": files, "rerun": rerun}


def _json(root: Path, stem: str) -> dict:
    return json.loads((root / f"{stem}.json").read_text(encoding="utf-8"))


def test_the_batch_goes_on_and_exits_3(converted: dict[str, Any]) -> None:
    result, files = converted["result"], converted["files"]
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    for name in ("good.pdf", "good.png", "xref.pdf", "huge-page.pdf", "png-named.pdf", "pdf-named.jpg"):
        assert files[name]["status"] == "converted", files[name]
    for f in files.values():
        assert f["status"] in ("converted", "partial", "failed"), f
        assert f["status"] == "converted" or f["reason"] and "\n" not in f["reason"]


@pytest.mark.parametrize(("name", "status", "reason"), [
    # PyMuPDF 2.0 raises from page_count; older versions report the /Count, which exceeds the object count
    ("count.pdf", "failed", r"^corrupt PDF: (cannot count its pages|its page tree claims)"),
    ("stub.pdf", "failed", r"^corrupt or truncated PDF"),
    ("text.pdf", "failed", r"^not a PDF or a supported image"),
    ("empty.pdf", "failed", r"^empty file \(0 bytes\)$"),
    ("vanish.pdf", "failed", r"vanished"),
    ("bomb.pdf", "failed", r"p1: page 1: embedded image too large \(decompression-bomb guard\): 20000x20000"),
    ("cycle.pdf", "partial", r"p2: page 2: cannot read page: .*cycle"),
    ("truncated.pdf", "partial", r"p2: page 2: page object missing \(damaged PDF\)"),
    ("lost-contents.pdf", "partial", r"p2: page 2: page content stream missing \(damaged PDF\); it would render blank"),
])
def test_each_hostile_file_is_its_own_failure(converted: dict[str, Any], name: str, status: str, reason: str) -> None:
    f = converted["files"][name]
    assert f["status"] == status and re.search(reason, f["reason"]), f
    assert name in converted["result"].stderr  # the log names it too


def test_damaged_pdfs_carry_muppdf_warnings_in_json_report_and_log(converted: dict[str, Any]) -> None:
    root, files = converted["root"], converted["files"]
    doc = _json(root, "truncated")
    assert doc["status"] == "partial"
    assert any("repair" in w for w in doc["warnings"]), doc["warnings"]
    page2 = doc["pages"][1]
    assert page2["error"]["stage"] == "render" and "page object missing" in page2["error"]["message"]
    assert doc["pages"][0]["error"] is None and doc["pages"][0]["blocks"]
    repaired = _json(root, "xref")  # converted, but the repair is on record
    assert repaired["status"] == "ok" and any("repair" in w for w in repaired["warnings"])
    assert any("repair" in w for w in files["xref.pdf"]["warnings"])
    report = json.loads(converted["result"].stdout)
    assert report["totals"]["with_warnings"] >= 2
    assert "with warnings" in converted["result"].stderr
    assert "MuPDF error" not in converted["result"].output  # MuPDF's own stderr chatter is off


def test_valid_and_odd_files_convert_by_content(converted: dict[str, Any]) -> None:
    root = converted["root"]
    assert _json(root, "huge-page")["pages"][0]["width"] > 0
    assert _json(root, "pdf-named")["source"]["page_count"] == 2
    assert _json(root, "png-named")["source"]["page_count"] == 1
    assert not list(root.rglob("*.tmp"))


def test_rerun_skips_what_is_done_and_retries_only_what_failed(converted: dict[str, Any]) -> None:
    rerun = converted["rerun"]
    assert rerun.exit_code == 3
    files = {Path(f["source"]).name: f["status"] for f in json.loads(rerun.stdout)["files"]}
    assert files["good.pdf"] == files["xref.pdf"] == files["huge-page.pdf"] == "skipped"
    assert files["truncated.pdf"] == files["cycle.pdf"] == "partial"  # still missing a page: never "up to date"
    assert "vanish.pdf" not in files  # gone for good


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX permissions")
def test_an_unreadable_file_fails_alone(scripted_checkpoint: Path) -> None:
    """A file with mode 000. Root reads anything, so as root the CLI runs as `nobody` (in a subprocess, over a
    world-writable copy of the tree and checkpoint)."""
    as_root = os.geteuid() == 0
    work = Path(tempfile.mkdtemp(prefix="deepocr-unreadable-"))
    try:
        os.chmod(work, 0o777)
        ckpt = Path(shutil.copytree(scripted_checkpoint, work / "ckpt"))
        docs = work / "docs"
        docs.mkdir()
        (docs / "good.pdf").write_bytes(pdf_bytes(1))
        (docs / "secret.pdf").write_bytes(pdf_bytes(1))
        for p in [ckpt, *ckpt.rglob("*"), docs, *docs.iterdir()]:
            os.chmod(p, 0o777 if p.is_dir() else 0o666)
        os.chmod(docs / "secret.pdf", 0o000)
        env = {**os.environ, "HOME": str(work), "XDG_CACHE_HOME": str(work / "cache"),
               "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        try:
            r = _run_cli(docs, ckpt, env, work, as_root)
        except PermissionError as e:  # root's Python (e.g. a venv under /root) is not executable by nobody
            pytest.skip(f"cannot run the CLI as another user here: {e}")
        if r.returncode != 3 and "Permission denied" in r.stderr and "secret" not in r.stderr:
            pytest.skip(f"this machine does not let nobody run the test's Python: {r.stderr[-300:]}")
        assert r.returncode == 3, r.stderr[-2000:]
        files = {Path(f["source"]).name: f for f in json.loads(r.stdout)["files"]}
        assert files["good.pdf"]["status"] == "converted"
        assert files["secret.pdf"]["status"] == "failed" and "permission denied" in files["secret.pdf"]["reason"].lower()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run_cli(docs: Path, ckpt: Path, env: dict, work: Path, as_root: bool) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deepocr_cli", "convert", str(docs), "--model", str(ckpt), "--max-mode", "tiny",
         "--max-new-tokens", "16", "--no-deep", "--json"],
        capture_output=True, text=True, env=env, timeout=300, cwd=work,
        **({"user": 65534, "group": 65534, "extra_groups": []} if as_root else {}),
    )


def test_a_big_scan_converts_quietly_and_the_cap_refuses_bigger(scripted_checkpoint: Path, tmp_path: Path) -> None:
    """A 600-dpi A2 scan class image (90 MP, over Pillow's own 89.5 MP bomb limit) converts, decoded reduced,
    with nothing on stderr under -q; --max-image-pixels below its size refuses it with a one-line reason."""
    docs = tmp_path / "scans"
    docs.mkdir()
    Image.new("L", (9_000, 10_000), 255).save(docs / "a2-scan.jpg", quality=40)
    args = ["convert", str(docs), "--model", str(scripted_checkpoint), "--max-new-tokens", "32", "--mode", "tiny"]
    quiet = CliRunner().invoke(app, [*args, "-q"])
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == ""  # no DecompressionBombWarning, no MuPDF chatter, no log lines
    assert json.loads((docs / "a2-scan.json").read_text())["pages"][0]["error"] is None
    capped = CliRunner().invoke(app, [*args, "--force", "--json", "--max-image-pixels", "50000000"])
    assert capped.exit_code == 3
    (f,) = json.loads(capped.stdout)["files"]
    assert f["status"] == "failed" and f["reason"] == (
        "image too large (decompression-bomb guard): 9000x10000 = 90,000,000 pixels exceeds the cap of "
        "50,000,000 (--max-image-pixels)")
