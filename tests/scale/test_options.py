"""Scale-out options without starting workers: --shard, usage errors, Ray missing."""

from __future__ import annotations

import json
import sys
from pathlib import Path, PurePosixPath

import pytest
from PIL import Image
from typer.testing import CliRunner

from deepocr_cli.cli import app
from deepocr_cli.errors import UsageError
from deepocr_cli.options import ConvertOptions
from deepocr_cli.scale.local import resolve_devices
from deepocr_cli.scale.shard import parse_shard, shard_of

runner = CliRunner()


def test_shard_is_a_stable_partition_of_relative_paths() -> None:
    names = [f"box{i // 10}/scan-{i:03d}.pdf" for i in range(200)]
    shards = [shard_of(n, 4) for n in names]
    assert set(shards) == {0, 1, 2, 3} and all(shards.count(s) > 20 for s in range(4))  # spread, not lumped
    # A pinned value: the hash must not change between versions, or machines would split the tree differently.
    assert shard_of("box0/scan-000.pdf", 4) == shard_of(PurePosixPath("box0") / "scan-000.pdf", 4)
    assert shard_of("box0/scan-000.pdf", 1000) == 934  # printf ... | sha256sum: first 8 bytes mod 1000
    assert parse_shard("2/4") == (2, 4)
    for bad in ("4/4", "1", "-1/3", "a/b", "1/0"):
        with pytest.raises(UsageError):
            parse_shard(bad)


def test_shards_split_a_tree_between_runs(scripted_checkpoint: Path, tmp_path: Path) -> None:
    for i in range(6):
        Image.new("RGB", (120 + i, 90), "white").save(tmp_path / f"p{i}.png")
    seen = []
    for shard in ("0/2", "1/2"):
        r = runner.invoke(app, ["convert", str(tmp_path), "--model", str(scripted_checkpoint), "--mode", "tiny",
                                "--max-new-tokens", "24", "--no-deep", "--shard", shard, "--json", "-q"])
        assert r.exit_code == 0, r.stderr
        files = [Path(f["source"]).name for f in json.loads(r.stdout)["files"]]
        assert all(shard_of(n, 2) == int(shard[0]) for n in files)
        seen += files
    assert sorted(seen) == [f"p{i}.png" for i in range(6)]  # each document in exactly one shard


@pytest.mark.parametrize("kwargs", [
    {"devices": ("cpu",), "ray": "local"},
    {"workers": 2},
    {"ray": "auto", "workers": 0},
    {"worker_retries": -1},
    {"shard": (3, 3)},
    {"devices": ("all", "cpu")},
    {"worker_timeout": 60.0},  # no worker process to kill: the run's own process would hang just the same
    {"devices": ("cpu",), "worker_timeout": 0.0},
])
def test_invalid_scale_options_are_usage_errors(kwargs: dict) -> None:
    with pytest.raises(UsageError):
        ConvertOptions(**kwargs)


def test_device_names_are_checked() -> None:
    assert resolve_devices(("cpu", "cuda", "cuda:3")) == ["cpu", "cuda:0", "cuda:3"]
    for bad in (("gpu0",), ("cpu:1",), ("cuda:x",)):
        with pytest.raises(UsageError):
            resolve_devices(bad)
    with pytest.raises(UsageError, match="no CUDA device"):  # the tests hide every GPU
        resolve_devices(("all",))


def test_ray_missing_is_a_usage_error_with_the_install_command(tmp_path: Path, monkeypatch) -> None:
    Image.new("RGB", (100, 80), "white").save(tmp_path / "page.png")
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    r = runner.invoke(app, ["convert", str(tmp_path), "--model", "unused", "--ray", "local"])
    assert r.exit_code == 2
    assert "pip install 'deepocr-cli[ray]'" in r.stderr
    assert not (tmp_path / "page.json").exists()
    r = runner.invoke(app, ["convert", str(tmp_path), "--model", "unused", "--shard", "5/2"])
    assert r.exit_code == 2 and "--shard" in r.stderr
