"""Tests for the sample-document generator: valid, openable, deterministic files with the expected content."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deepocr_cli.inputs.discover import DocKind, find_documents
from deepocr_cli.inputs.render import open_document
from deepocr_cli.sample_docs import (
    CHART_DATA,
    CHART_TITLE,
    MOLECULE_NAME,
    MOLECULE_SMILES,
    SAMPLE_FILES,
    SLIDE_BULLETS,
    SLIDE_TITLE,
    TEXT_TITLE,
    make_sample_docs,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    paths = make_sample_docs(tmp_path_factory.mktemp("samples"))
    return {p.name: p for p in paths}


def test_writes_every_file_small(samples: dict[str, Path]) -> None:
    assert list(samples) == list(SAMPLE_FILES)
    for path in samples.values():
        assert 1_000 < path.stat().st_size < 300_000, path.name


def test_discovered_with_the_right_kinds(samples: dict[str, Path]) -> None:
    folder = next(iter(samples.values())).parent
    docs, skipped = find_documents([folder])
    assert skipped == []
    kinds = {d.rel.name: d.kind for d in docs}
    assert kinds == {name: DocKind.PDF if name.endswith(".pdf") else DocKind.IMAGE for name in SAMPLE_FILES}


@pytest.mark.parametrize(
    ("name", "size", "needles"),
    [
        ("text_page.pdf", (595.0, 842.0), [TEXT_TITLE, "vision tokens"]),
        ("two_columns.pdf", (595.0, 842.0), ["Table 1", "Discriminant", "4ac", "2a", "(1)"]),
        ("slide.pdf", (960.0, 540.0), [SLIDE_TITLE, *SLIDE_BULLETS]),
        (
            "bar_chart.pdf",
            (595.0, 842.0),
            [CHART_TITLE, "Quarter", "Units (thousands)", *(str(v) for _, v in CHART_DATA)],
        ),
    ],
)
def test_pdfs_have_one_page_with_a_text_layer(
    samples: dict[str, Path], name: str, size: tuple[float, float], needles: list[str]
) -> None:
    with open_document(samples[name]) as r:
        assert r.kind is DocKind.PDF and r.page_count == 1
        assert r.page_size(0) == size
        text = r.page_text(0) or ""
        im = r.render(0, (300, round(300 * size[1] / size[0])))
    for needle in needles:
        assert needle in text, needle
    assert len(im.getcolors(2**16) or []) > 2  # something was drawn, not a blank page


def test_two_columns_really_has_two_columns(samples: dict[str, Path]) -> None:
    with open_document(samples["two_columns.pdf"]) as r:
        blocks = r.pdf_page(0).get_text("blocks")
    lefts = {round(b[0]) for b in blocks if 90 < b[1] < 330}  # text blocks in the column band
    assert len(lefts) == 2 and max(lefts) > 595 / 2


def test_images_have_no_text_layer_and_look_right(samples: dict[str, Path]) -> None:
    with open_document(samples["molecule.png"]) as r:
        assert r.page_count == 1 and r.page_text(0) is None
        mol = r.render(0)
    with open_document(samples["scanned_page.jpg"]) as r:
        assert r.page_count == 1 and r.page_text(0) is None
        scan = r.render(0).convert("L")
    assert mol.size == (600, 450) and mol.getpixel((2, 2)) == (255, 255, 255)
    # the scan is grayish (no pure-white paper), tilted (canvas larger than A4 at 100 dpi) and has ink
    w, h = scan.size
    assert w > 827 and h > 1169 and abs(w / h - 595 / 842) < 0.03
    lo, hi = scan.getextrema()  # type: ignore[misc]
    paper = scan.crop((w // 3, h - 300, 2 * w // 3, h - 200))
    mean = float(np.asarray(paper).mean())
    assert 200 < mean < 245 and lo < 100


def test_molecule_structure_matches_its_caption() -> None:
    from rdkit import Chem
    from rdkit.Chem import rdMolDescriptors

    # the caption is "<name> (<formula>)"; caffeine is C8H10N4O2, so name and structure agree
    assert MOLECULE_NAME == "Caffeine"
    assert rdMolDescriptors.CalcMolFormula(Chem.MolFromSmiles(MOLECULE_SMILES)) == "C8H10N4O2"


def test_deterministic(samples: dict[str, Path], tmp_path: Path) -> None:
    again = make_sample_docs(tmp_path)
    for path in again:
        first = hashlib.sha256(samples[path.name].read_bytes()).hexdigest()
        assert hashlib.sha256(path.read_bytes()).hexdigest() == first, path.name


def test_module_entry_point(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "deepocr_cli.sample_docs", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        timeout=120,
    )
    assert out.stdout.split() == [str(tmp_path / "demo" / name) for name in SAMPLE_FILES]


def test_readme_lists_every_file() -> None:
    readme = (REPO / "sample_docs" / "README.md").read_text()
    for name in SAMPLE_FILES:
        assert f"`{name}`" in readme, name
    assert "make demo" in readme
