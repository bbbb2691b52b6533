"""The formats in the registry: `--format` validation, atomic writes of every format, per-format up-to-date checks
and rebuilding a missing format from the stored JSON without the model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pymupdf
import pytest
from formats_data import doc_result, make_scan_pdf, paths_for
from typer.testing import CliRunner

from deepocr_cli.cli import app
from deepocr_cli.errors import UsageError
from deepocr_cli.options import ConvertOptions
from deepocr_cli.outputs.formats import FORMATS, Format, write_document
from deepocr_cli.outputs.stored import load_stored
from deepocr_cli.run.convert import convert
from deepocr_cli.run.state import stale_outputs

ALL = ("md", "json", "pdf", "alto", "txt", "html")
SUFFIXES = {"md": ".md", "json": ".json", "pdf": ".ocr.pdf", "alto": ".alto.xml", "txt": ".txt", "html": ".html"}


def test_every_format_is_registered_with_its_file_name() -> None:
    assert tuple(FORMATS) == ALL
    assert {name: f.suffix for name, f in FORMATS.items()} == SUFFIXES


def test_format_option_is_validated() -> None:
    assert ConvertOptions(formats=("txt", "pdf", "html")).formats == ("txt", "pdf", "html")
    with pytest.raises(UsageError, match="pdf, alto, txt, html"):
        ConvertOptions(formats=("md", "docx"))
    result = CliRunner().invoke(app, ["convert", "x.pdf", "--format", "md,docx"])
    assert result.exit_code == 2 and "docx" in result.output


def test_write_document_writes_every_format_json_first(tmp_path: Path) -> None:
    source = make_scan_pdf(tmp_path / "scan.pdf", rotations=(0,))
    paths = paths_for(source)
    written = write_document(doc_result(source, ["paper_two_column.txt"]), paths, ALL)
    assert [p.name for p in written] == [f"scan{SUFFIXES[n]}" for n in ALL]
    json_mtime = paths.json.stat().st_mtime_ns
    assert all(p.stat().st_mtime_ns >= json_mtime for p in written)
    assert "Lovelace" in pymupdf.open(paths.with_suffix(".ocr.pdf"))[0].get_text()


@pytest.mark.parametrize("name", ALL)
def test_a_failing_format_leaves_the_previous_file_and_no_temp_file(tmp_path: Path, name: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    source = make_scan_pdf(tmp_path / "scan.pdf", rotations=(0,))
    paths = paths_for(source)
    doc = doc_result(source, ["paper_two_column.txt"])
    write_document(doc, paths, [name])
    target = FORMATS[name].path(paths)
    before = target.read_bytes()

    def broken(d, p):  # noqa: ANN001, ANN202 - a renderer that fails after doing its work
        FORMATS_REAL[name].render(d, p)
        raise RuntimeError("disk on fire")

    FORMATS_REAL = dict(FORMATS)
    monkeypatch.setitem(FORMATS, name, Format(name, FORMATS_REAL[name].suffix, broken))
    with pytest.raises(RuntimeError):
        write_document(doc, paths, [name])
    assert target.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_stale_outputs_per_format(tmp_path: Path) -> None:
    source = make_scan_pdf(tmp_path / "scan.pdf", rotations=(0,))
    paths = paths_for(source)
    doc = doc_result(source, ["paper_two_column.txt"])
    doc.settings["state_key"] = "k1"
    assert stale_outputs(paths, "k1", ALL) is None  # nothing written yet
    write_document(doc, paths, ("md", "json"))
    assert stale_outputs(paths, "k1", ("md", "json")) == []
    assert stale_outputs(paths, "k1", ("json", "html", "pdf")) == ["pdf", "html"]
    assert stale_outputs(paths, "k2", ("md",)) is None  # other settings: convert again
    write_document(doc, paths, ("pdf",))
    assert stale_outputs(paths, "k1", ("md", "pdf")) == []
    pdf = paths.with_suffix(".ocr.pdf")
    old = paths.json.stat().st_mtime_ns - 10**9  # left by an earlier run, before this JSON
    os.utime(pdf, ns=(old, old))
    assert stale_outputs(paths, "k1", ("md", "pdf")) == ["pdf"]


def test_load_stored_round_trips_the_json(tmp_path: Path) -> None:
    source = make_scan_pdf(tmp_path / "scan.pdf", rotations=(0, 0))
    paths = paths_for(source)
    doc = doc_result(source, ["paper_two_column.txt", None], failed=(1,))
    write_document(doc, paths, ("json", "alto", "txt"))
    back = load_stored(paths.json, source)
    assert back.pages == doc.pages and back.model == doc.model and back.settings == doc.settings
    for name in ("alto", "txt"):
        assert FORMATS[name].render(back, paths) == FORMATS[name].path(paths).read_bytes()


def test_convert_rebuilds_a_newly_requested_format_without_the_model(scripted_checkpoint: Path,
                                                                      tmp_path: Path) -> None:
    source = make_scan_pdf(tmp_path / "scan.pdf", rotations=(0,))
    opts = ConvertOptions(model=str(scripted_checkpoint), mode="tiny", max_new_tokens=32, deep=False)
    assert convert([source], opts).exit_code == 0
    stored = json.loads((tmp_path / "scan.json").read_text())
    assert stored["pages"][0]["blocks"][0]["label"] == "image"

    def no_model():  # noqa: ANN202
        raise AssertionError("the model must not be loaded to rebuild outputs")

    wider = ConvertOptions(model=str(scripted_checkpoint), mode="tiny", max_new_tokens=32, deep=False,
                           formats=("md", "json", "pdf", "txt"))  # fmt: skip
    report = convert([source], wider, engine_factory=no_model)
    (fr,) = report.files
    assert fr.status == "restored" and "scan.ocr.pdf, scan.txt from scan.json" in fr.reason
    assert sorted(Path(p).name for p in fr.outputs) == ["scan.ocr.pdf", "scan.txt"]
    assert "Hello deepocr" in (tmp_path / "scan.txt").read_text()
    assert "Hello deepocr" in " ".join(pymupdf.open(tmp_path / "scan.ocr.pdf")[0].get_text().split())
    again = convert([source], wider, engine_factory=no_model).files[0]
    assert again.status == "skipped" and again.reason == "up to date" and again.outputs == []


def test_a_source_gone_before_writing_fails_that_file_only(scripted_checkpoint: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The pdf renderer reads the source again; if it is gone by then, the file fails and the batch goes on."""
    first = make_scan_pdf(tmp_path / "a.pdf", rotations=(0,))
    second = make_scan_pdf(tmp_path / "b.pdf", rotations=(0,))
    real = FORMATS["pdf"]

    def vanishing(doc, paths):  # noqa: ANN001, ANN202
        if doc.source.name == "a.pdf":
            doc.source.unlink()
        return real.render(doc, paths)

    monkeypatch.setitem(FORMATS, "pdf", Format("pdf", real.suffix, vanishing))
    opts = ConvertOptions(model=str(scripted_checkpoint), mode="tiny", max_new_tokens=32, deep=False,
                          formats=("json", "pdf"))  # fmt: skip
    report = convert([first, second], opts)
    by_name = {Path(f.source).name: f for f in report.files}
    assert by_name["a.pdf"].status == "failed" and "outputs not all written" in by_name["a.pdf"].reason
    assert by_name["b.pdf"].status == "converted" and (tmp_path / "b.ocr.pdf").exists()
    assert report.exit_code == 3


def test_cli_format_writes_exactly_the_requested_files(scripted_checkpoint: Path, tmp_path: Path) -> None:
    source = make_scan_pdf(tmp_path / "scan.pdf", rotations=(0,))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["convert", str(source), "--model", str(scripted_checkpoint), "--mode", "tiny",
                                      "--max-new-tokens", "32", "--no-deep", "-o", str(out), "-q",
                                      "--format", "txt,alto,html,pdf"])  # fmt: skip
    assert result.exit_code == 0, result.output
    # (plus deepocr's hidden record of what it wrote, `.scan.deepocr-state.json`, which up-to-date checks read)
    assert sorted(p.name for p in out.iterdir() if p.is_file() and not p.name.startswith(".")) == [
        "scan.alto.xml", "scan.html", "scan.ocr.pdf", "scan.txt"]  # fmt: skip
    assert (out / ".scan.deepocr-state.json").is_file()
    assert "Hello deepocr" in (out / "scan.txt").read_text(encoding="utf-8")
