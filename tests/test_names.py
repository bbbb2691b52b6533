"""Every file an archive holds converts, whatever its name, through the CLI on real files made here:
non-UTF-8 names, names near the 255-byte limit, junk before ``%PDF-``, and two files of one name given together
(README, "Inputs"). Each output round-trips to its source through the JSON's ``source.path``, and a rerun skips
it as up to date."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pymupdf
import pytest
from PIL import Image
from typer.testing import CliRunner

from deepocr_cli.cli import app
from deepocr_cli.outputs.paths import NAME_MAX, fit_stem

LATIN1_PDF = os.fsdecode(b"caf\xe9.pdf")  # a Latin-1 name from an old file server: not valid UTF-8
LATIN1_PNG = os.fsdecode(b"r\xe9sum\xe9.png")
LONG_ASCII = "A" * 240 + ".pdf"  # 244 bytes
LONG_UTF8 = "é" * 120 + ".pdf"  # 244 bytes, two per character


def pdf_bytes(text: str = "Hello") -> bytes:
    doc = pymupdf.open()
    doc.new_page(width=595, height=842).insert_text((72, 100), text, fontsize=20)
    data = doc.tobytes()
    doc.close()
    return data


def convert(model: Path, *args: str) -> Any:
    result = CliRunner().invoke(app, ["convert", *args, "--model", str(model), "--max-new-tokens", "32",
                                      "--mode", "tiny", "--json"])
    result.files = {f["source"]: f for f in json.loads(result.stdout)["files"]} if result.stdout else {}
    return result


def statuses(result: Any) -> dict[str, str]:
    return {Path(s).name: f["status"] for s, f in result.files.items()}


def source_of(json_file: Path) -> Path:
    """The file the JSON says it was made from: ``source.path`` is relative to the JSON's folder."""
    data = json.loads(json_file.read_bytes().decode("utf-8"))  # strictly UTF-8, whatever the name
    return json_file.parent / data["source"]["path"]


@pytest.fixture()
def odd_tree(tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    root.mkdir()
    (root / LATIN1_PDF).write_bytes(pdf_bytes("Cafe"))
    Image.new("RGB", (300, 200), "white").save(root / LATIN1_PNG, format="PNG")
    (root / LONG_ASCII).write_bytes(pdf_bytes("Long"))
    (root / LONG_UTF8).write_bytes(pdf_bytes("Long too"))
    (root / "mailed.pdf").write_bytes(b"Received: from gateway\r\nX-Junk: 1\r\n\r\n" + pdf_bytes("Mailed"))
    return root


def test_odd_names_and_junk_headers_convert_round_trip_and_skip_on_rerun(
    scripted_checkpoint: Path, odd_tree: Path
) -> None:
    first = convert(scripted_checkpoint, str(odd_tree))
    assert first.exit_code == 0, first.output
    assert set(statuses(first).values()) == {"converted"} and len(first.files) == 5

    names = set(os.listdir(os.fsencode(odd_tree)))
    # non-UTF-8: the outputs keep the source's bytes
    assert {b"caf\xe9.md", b"caf\xe9.json", b"caf\xe9_images", b"r\xe9sum\xe9.md", b"r\xe9sum\xe9.json"} <= names
    # the log shows the name readably, undecodable bytes as \xNN
    assert "caf\\xe9.pdf" in first.stderr
    # near 255 bytes: every name fits, stems shortened with a stable hash, the JSON keeps the full name
    assert all(len(n) <= NAME_MAX for n in names)
    for long_name in (LONG_ASCII, LONG_UTF8):
        stem = fit_stem(Path(long_name).stem)
        assert stem != Path(long_name).stem and len(os.fsencode(stem + ".json")) < NAME_MAX
        assert (odd_tree / f"{stem}.md").exists() and (odd_tree / f"{stem}_images").is_dir()
        stem.encode("utf-8")  # cut on a character boundary: still valid UTF-8
    # every JSON leads back to its source, byte for byte
    jsons = sorted(p for p in odd_tree.iterdir() if p.suffix == ".json" and not p.name.startswith("."))
    assert len(jsons) == 5
    sources = {source_of(j).name for j in jsons}
    assert sources == {LATIN1_PDF, LATIN1_PNG, LONG_ASCII, LONG_UTF8, "mailed.pdf"}
    assert all(source_of(j).is_file() for j in jsons)
    assert '"path": "caf\\udce9.pdf"' in (odd_tree / os.fsdecode(b"caf\xe9.json")).read_text("utf-8")  # the escape rule
    # junk before %PDF-: read as the PDF it is
    assert json.loads((odd_tree / "mailed.json").read_text())["pages"][0]["error"] is None
    # the Markdown stays UTF-8; its image links percent-encode the crop folder's bytes
    md = (odd_tree / LATIN1_PDF).with_suffix(".md").read_bytes()
    assert "](caf%E9_images/p001_00.jpg)" in md.decode("utf-8") and (odd_tree / os.fsdecode(b"caf\xe9_images/p001_00.jpg")).is_file()
    assert not [n for n in names if n.endswith(b".tmp")]

    again = convert(scripted_checkpoint, str(odd_tree))
    assert again.exit_code == 0 and set(statuses(again).values()) == {"skipped"}, again.output


def test_fit_stem_is_stable_distinct_and_fits() -> None:
    a, b = "x" * 230 + "-first", "x" * 230 + "-second"
    assert fit_stem(a) == fit_stem(a) != fit_stem(b)
    assert fit_stem("short") == "short"
    for stem in (a, "é" * 200, os.fsdecode(b"\xe9" * 250)):
        out = os.fsencode(fit_stem(stem))
        assert len(out) + 48 <= NAME_MAX and b"~" in out


def test_same_name_in_two_folders_maps_the_same_whatever_the_order(scripted_checkpoint: Path, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.pdf").write_bytes(pdf_bytes("from a"))
    (tmp_path / "b" / "x.pdf").write_bytes(pdf_bytes("from b"))
    a, b = str(tmp_path / "a" / "x.pdf"), str(tmp_path / "b" / "x.pdf")

    out1, out2 = tmp_path / "out1", tmp_path / "out2"
    r1 = convert(scripted_checkpoint, a, b, "-o", str(out1))
    r2 = convert(scripted_checkpoint, b, a, "-o", str(out2))
    assert r1.exit_code == r2.exit_code == 0, r1.output + r2.output
    names1, names2 = sorted(os.listdir(out1)), sorted(os.listdir(out2))
    assert names1 == names2  # the argument order changes nothing
    jsons = [n for n in names1 if n.endswith(".json") and not n.startswith(".")]
    assert len(jsons) == 2 and all(n.startswith("x.pdf~") for n in jsons)
    # distinct sources, each JSON leading back to its own
    by_source = {source_of(out1 / n).resolve(): n for n in jsons}
    assert set(by_source) == {Path(a).resolve(), Path(b).resolve()}
    for n in jsons:
        assert json.loads((out2 / n).read_text())["source"]["path"] == json.loads((out1 / n).read_text())["source"]["path"]
    rerun = convert(scripted_checkpoint, a, b, "-o", str(out1))
    assert set(statuses(rerun).values()) == {"skipped"}


def test_every_format_is_written_for_a_non_utf8_name(scripted_checkpoint: Path, tmp_path: Path) -> None:
    """pdf reopens the source (by its bytes), alto/html/txt are UTF-8: the name's bytes are %XX there."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / LATIN1_PDF).write_bytes(pdf_bytes("Cafe"))
    fmt = ["--format", "md,json,pdf,alto,txt,html", "-o", str(tmp_path / "out")]  # out: x.ocr.pdf is no input
    first = convert(scripted_checkpoint, str(tmp_path / "in"), *fmt)
    assert first.exit_code == 0, first.output
    names = set(os.listdir(os.fsencode(tmp_path / "out")))
    for suffix in (b".md", b".json", b".ocr.pdf", b".alto.xml", b".txt", b".html"):
        assert b"caf\xe9" + suffix in names
    assert "caf%E9.pdf" in (tmp_path / "out" / os.fsdecode(b"caf\xe9.alto.xml")).read_bytes().decode("utf-8")
    again = convert(scripted_checkpoint, str(tmp_path / "in"), *fmt)
    assert set(statuses(again).values()) == {"skipped"}
