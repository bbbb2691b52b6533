"""--cuda-graphs on the command line: infer and convert hand it to the engine; off CUDA it warns and changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from deepocr_cli.cli import app
from deepocr_cli.options import ConvertOptions


def _png(path: Path, text: str) -> Path:
    img = Image.new("RGB", (420, 300), "white")
    ImageDraw.Draw(img).text((20, 20), text, fill="black")
    img.save(path)
    return path


def test_infer_cuda_graphs_on_cpu_warns_and_prints_the_same_tokens(random_checkpoint: Path, tmp_path: Path) -> None:
    pngs = [str(_png(tmp_path / f"p{i}.png", f"page {i}")) for i in range(3)]
    base = ["infer", *pngs, "--model", str(random_checkpoint), "--mode", "tiny", "--max-new-tokens", "7",
            "--batch-size", "2", "--json", "--device", "cpu"]
    runner = CliRunner()
    plain, graphs = runner.invoke(app, base), runner.invoke(app, [*base, "--cuda-graphs"])
    assert plain.exit_code == graphs.exit_code == 3, graphs.stderr  # truncated: the random checkpoint never stops
    assert "--cuda-graphs: no CUDA device (cpu); decoding eagerly" in graphs.stderr
    assert "--cuda-graphs" not in plain.stderr
    ids = [[json.loads(line)["generated_ids"] for line in r.stdout.splitlines()] for r in (plain, graphs)]
    assert ids[0] == ids[1] and all(len(t) == 7 for t in ids[0])


def test_convert_hands_cuda_graphs_to_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    import deepocr_cli.engine as engine_pkg
    from deepocr_cli.run.convert import _load_engine

    seen = {}
    monkeypatch.setattr(engine_pkg, "load_engine", lambda *a, **kw: seen.update(kw) or "engine")
    assert _load_engine(ConvertOptions(model="m", cuda_graphs=True)) == "engine"
    assert seen["cuda_graphs"] is True
    assert "cuda_graphs" not in ConvertOptions().key_settings()  # speed only: no reconversion when it changes


def test_scale_workers_get_cuda_graphs_too() -> None:
    from deepocr_cli.scale.engine import engine_spec

    spec = engine_spec(ConvertOptions(model="m", cuda_graphs=True, devices=("cpu", "cpu")))
    assert spec.cuda_graphs is True and spec.with_device("cuda").cuda_graphs is True
