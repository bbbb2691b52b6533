"""Tests for input discovery: content sniffing, walking rules, dedupe, order, filters and skipped inputs."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from deepocr_cli.inputs.discover import DocKind, SkippedInput, SourceDoc, find_documents, sniff_kind

PDF_BYTES = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"


def _image_bytes(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 3), (200, 10, 10)).save(buf, format=fmt)
    return buf.getvalue()


def _write(path: Path, data: bytes = PDF_BYTES) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _rels(docs: list[SourceDoc]) -> list[str]:
    return [d.rel.as_posix() for d in docs]


def _reasons(skipped: list[SkippedInput]) -> dict[str, str]:
    return {s.path.name: s.reason for s in skipped}


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "WEBP", "BMP"])
def test_sniff_recognises_each_image_format(tmp_path: Path, fmt: str) -> None:
    p = _write(tmp_path / "x.bin", _image_bytes(fmt))
    assert sniff_kind(p) is DocKind.IMAGE


def test_sniff_finds_pdf_header_after_junk_but_not_beyond_1k(tmp_path: Path) -> None:
    assert sniff_kind(_write(tmp_path / "a", b"\x00" * 500 + PDF_BYTES)) is DocKind.PDF
    assert sniff_kind(_write(tmp_path / "b", b"\x00" * 2000 + PDF_BYTES)) is None


def test_sniff_rejects_text_and_empty_and_fake_bmp(tmp_path: Path) -> None:
    assert sniff_kind(_write(tmp_path / "t.pdf", b"hello, not a pdf")) is None
    assert sniff_kind(_write(tmp_path / "e.pdf", b"")) is None
    # "BM" alone (e.g. a text file starting "BMW ...") is not a bitmap
    assert sniff_kind(_write(tmp_path / "bmw.bmp", b"BMW owners manual, chapter one, part two")) is None


def test_content_decides_kind_not_extension(tmp_path: Path) -> None:
    _write(tmp_path / "picture.pdf", _image_bytes("PNG"))
    _write(tmp_path / "paper.png", PDF_BYTES)
    docs, skipped = find_documents([tmp_path])
    kinds = {d.rel.name: d.kind for d in docs}
    assert kinds == {"picture.pdf": DocKind.IMAGE, "paper.png": DocKind.PDF}
    assert skipped == []


def test_wrong_content_with_supported_extension_is_reported_when_walking(tmp_path: Path) -> None:
    _write(tmp_path / "fake.pdf", b"just some text")
    _write(tmp_path / "empty.png", b"")
    _write(tmp_path / "notes.txt", b"ignored silently")
    _write(tmp_path / "good.pdf")
    docs, skipped = find_documents([tmp_path])
    assert _rels(docs) == ["good.pdf"]
    reasons = _reasons(skipped)
    assert set(reasons) == {"fake.pdf", "empty.png"}
    assert "not a PDF" in reasons["fake.pdf"]
    assert "empty" in reasons["empty.png"]


def test_explicit_file_is_sniffed_whatever_its_extension(tmp_path: Path) -> None:
    img = _write(tmp_path / "scan.dat", _image_bytes("JPEG"))
    txt = _write(tmp_path / "readme.pdf", b"plain text")
    docs, skipped = find_documents([img, txt])
    assert [(d.path, d.kind, d.root, d.rel) for d in docs] == [
        (img, DocKind.IMAGE, tmp_path, Path("scan.dat"))
    ]
    assert [s.path for s in skipped] == [txt]
    assert "not a PDF" in skipped[0].reason


def test_nonexistent_path_and_directory_named_pdf(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pdf"
    d = tmp_path / "x.pdf"
    d.mkdir()
    docs, skipped = find_documents([missing, d])
    assert docs == []
    assert _reasons(skipped) == {
        "nope.pdf": "does not exist"
    }  # an empty dir called x.pdf is just an empty dir


def test_hidden_entries_skipped_when_walking_but_taken_when_named(tmp_path: Path) -> None:
    _write(tmp_path / ".secret.pdf")
    _write(tmp_path / ".hidden" / "a.pdf")
    _write(tmp_path / "visible" / "b.pdf")
    docs, skipped = find_documents([tmp_path])
    assert _rels(docs) == ["visible/b.pdf"]
    assert skipped == []
    docs, _ = find_documents([tmp_path / ".secret.pdf"])
    assert _rels(docs) == [".secret.pdf"]


def test_symlink_loops_terminate_and_files_are_found_once(tmp_path: Path) -> None:
    _write(tmp_path / "a" / "doc.pdf")
    os.symlink(tmp_path, tmp_path / "a" / "back_to_root")  # a loop to an ancestor
    os.symlink(tmp_path / "a", tmp_path / "a_again")  # a second route to the same files
    os.symlink(tmp_path / "gone", tmp_path / "dangling.pdf")
    docs, skipped = find_documents([tmp_path])
    assert len(docs) == 1 and docs[0].path == (tmp_path / "a" / "doc.pdf").resolve()
    assert _reasons(skipped) == {"dangling.pdf": "broken symbolic link"}


def test_duplicates_removed_first_occurrence_wins(tmp_path: Path) -> None:
    f = _write(tmp_path / "sub" / "one.pdf")
    link = tmp_path / "alias.pdf"
    os.symlink(f, link)
    docs, _ = find_documents([f, tmp_path, f, tmp_path / "sub" / ".." / "sub" / "one.pdf", link])
    assert len(docs) == 1
    assert docs[0].root == tmp_path / "sub" and docs[0].rel == Path("one.pdf")


def test_order_is_sorted_and_deterministic(tmp_path: Path) -> None:
    names = ["b.pdf", "a/z.pdf", "a/b/c.png", "C.pdf", "a.pdf", "z/a.pdf", "a/a.jpg"]
    for n in reversed(names):
        _write(tmp_path / n, _image_bytes("PNG") if n.endswith((".png", ".jpg")) else PDF_BYTES)
    docs, _ = find_documents([tmp_path])
    assert _rels(docs) == ["C.pdf", "a/a.jpg", "a/b/c.png", "a/z.pdf", "a.pdf", "b.pdf", "z/a.pdf"]
    assert find_documents([tmp_path])[0] == docs


def test_argument_order_kept_across_inputs(tmp_path: Path) -> None:
    b = _write(tmp_path / "b.pdf")
    a = _write(tmp_path / "a.pdf")
    docs, _ = find_documents([b, a])
    assert [d.path for d in docs] == [b, a]


def test_no_recursive_stays_at_top(tmp_path: Path) -> None:
    _write(tmp_path / "top.pdf")
    _write(tmp_path / "deep" / "inner.pdf")
    assert _rels(find_documents([tmp_path], recursive=False)[0]) == ["top.pdf"]
    assert _rels(find_documents([tmp_path], recursive=True)[0]) == ["deep/inner.pdf", "top.pdf"]


def test_include_and_exclude_globs(tmp_path: Path) -> None:
    _write(tmp_path / "report.pdf")
    _write(tmp_path / "drafts" / "d1.pdf")
    _write(tmp_path / "scans" / "s1.png", _image_bytes("PNG"))
    _write(tmp_path / "scans" / "old" / "s0.png", _image_bytes("PNG"))
    assert _rels(find_documents([tmp_path], include=["*.png"])[0]) == ["scans/old/s0.png", "scans/s1.png"]
    assert _rels(find_documents([tmp_path], exclude=["drafts"])[0]) == [
        "report.pdf",
        "scans/old/s0.png",
        "scans/s1.png",
    ]
    assert _rels(find_documents([tmp_path], include=["scans/*"], exclude=["s0.png"])[0]) == ["scans/s1.png"]
    assert _rels(find_documents([tmp_path], exclude=["*/old/*"])[0]) == [
        "drafts/d1.pdf",
        "report.pdf",
        "scans/s1.png",
    ]


def test_own_outputs_are_skipped(tmp_path: Path) -> None:
    _write(tmp_path / "paper.pdf")
    crop = _write(tmp_path / "paper_images" / "fig1.png", _image_bytes("PNG"))
    _write(tmp_path / "out" / "paper.md", b"# md")  # --output-dir tree: outputs without the source
    _write(tmp_path / "out" / "paper_images" / "fig2.png", _image_bytes("PNG"))
    _write(
        tmp_path / "holiday_images" / "beach.png", _image_bytes("PNG")
    )  # no `holiday` source: a real folder
    state = _write(tmp_path / ".deepocr" / "tmp" / "page.png", _image_bytes("PNG"))
    docs, skipped = find_documents([tmp_path])
    assert _rels(docs) == ["holiday_images/beach.png", "paper.pdf"]
    assert skipped == []
    # named explicitly (e.g. by a shell glob), they are reported instead of converted
    docs, skipped = find_documents([crop, state, tmp_path / ".deepocr"])
    assert docs == []
    assert [s.path for s in skipped] == [crop, state, tmp_path / ".deepocr"]
    assert "deepocr" in skipped[0].reason and ".deepocr" in skipped[1].reason


def test_relative_paths_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path / "in" / "a.pdf")
    monkeypatch.chdir(tmp_path)
    docs, _ = find_documents([Path("in")])
    assert docs[0].root == tmp_path / "in" and docs[0].path.is_absolute() and docs[0].rel == Path("a.pdf")


def test_unreadable_file_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests run as root, so chmod cannot make a file unreadable; simulate the OS refusing instead.
    f = _write(tmp_path / "locked.pdf")
    real_open = Path.open

    def deny(self: Path, *args: object, **kwargs: object) -> object:
        if self == f:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "open", deny)
    docs, skipped = find_documents([tmp_path])
    assert docs == []
    assert _reasons(skipped) == {"locked.pdf": "cannot read: Permission denied"}


def test_unreadable_directory_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path / "ok" / "a.pdf")
    bad = tmp_path / "bad"
    _write(bad / "b.pdf")
    real_scandir = os.scandir

    def deny(path: object) -> object:
        if Path(path) == bad:  # type: ignore[arg-type]
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", deny)
    docs, skipped = find_documents([tmp_path])
    assert _rels(docs) == ["ok/a.pdf"]
    assert _reasons(skipped) == {"bad": "cannot read directory: Permission denied"}


def test_searchable_pdf_beside_its_json_is_not_converted_again(tmp_path: Path) -> None:
    import pymupdf

    doc = pymupdf.open()
    doc.new_page()
    doc.save(tmp_path / "paper.pdf")
    doc.save(tmp_path / "paper.ocr.pdf")  # what --format pdf wrote on an earlier run
    doc.save(tmp_path / "notes.ocr.pdf")  # a user's file that only looks like one: no notes.json beside it
    (tmp_path / "paper.json").write_text("{}", encoding="utf-8")
    docs, skipped = find_documents([tmp_path])
    assert [d.rel.name for d in docs] == ["notes.ocr.pdf", "paper.pdf"]
    assert not skipped
    # named explicitly, it is converted as asked
    docs, _ = find_documents([tmp_path / "paper.ocr.pdf"])
    assert [d.rel.name for d in docs] == ["paper.ocr.pdf"]
