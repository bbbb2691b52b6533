"""Locks, up-to-date keys and resumable partial records."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deepocr_cli.errors import UsageError
from deepocr_cli.options import ConvertOptions
from deepocr_cli.outputs.paths import output_paths
from deepocr_cli.outputs.results import PageResult
from deepocr_cli.run.state import DocumentLock, PartialPages, decide, page_still_valid, sha256_file, state_key


def _page(i: int) -> PageResult:
    return PageResult(index=i, width=10, height=20, mode="base", grid=(1, 1), vision_tokens=256,
                      image_embeddings=273, raw_text=f"page {i}", generated_tokens=3)


def test_lock_is_exclusive_across_processes(tmp_path: Path) -> None:
    src = tmp_path / "a.pdf"
    src.write_bytes(b"%PDF-1.4")
    lock = DocumentLock(src)
    assert lock.acquire()
    code = (
        "import sys; from pathlib import Path; from deepocr_cli.run.state import DocumentLock;"
        f"sys.exit(0 if DocumentLock(Path({str(src)!r})).acquire() else 7)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 7
    lock.release()
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_state_key_changes_with_settings_and_model() -> None:
    base = state_key("abc", {"id": "m", "revision": None}, {"mode": "base"})
    assert base == state_key("abc", {"id": "m", "revision": None}, {"mode": "base"})
    assert base != state_key("abc", {"id": "m", "revision": None}, {"mode": "tiny"})
    assert base != state_key("abc", {"id": "m2", "revision": None}, {"mode": "base"})
    assert base != state_key("abd", {"id": "m", "revision": None}, {"mode": "base"})


def test_a_json_of_the_same_key_stands_in_for_a_missing_state_record(tmp_path: Path) -> None:
    paths = output_paths(tmp_path / "a.pdf", tmp_path, None)
    assert decide(paths, "k1", ["json"]).action == "convert"
    paths.json.write_text(json.dumps({"settings": {"state_key": "k1"}, "status": "ok", "pages": []}))
    assert decide(paths, "k1", ["json"]).action == "current"
    assert decide(paths, "k2", ["json"]).action == "convert"
    assert decide(paths, "k1", ["md", "json"]).action == "rewrite"  # the Markdown comes back from the JSON
    paths.json.write_text("{torn")
    assert decide(paths, "k1", ["json"]).action == "convert"


def test_partial_pages_resume_and_ignore_torn_lines(tmp_path: Path) -> None:
    rec = PartialPages(tmp_path / ".a.deepocr-partial.jsonl", "key")
    rec.start([])
    rec.append(_page(0))
    rec.append(_page(2))
    with rec.path.open("a") as f:
        f.write('{"index": 5, "wid')  # killed mid-write
    loaded = rec.load()
    assert sorted(loaded) == [0, 2] and loaded[2].raw_text == "page 2"
    assert PartialPages(rec.path, "other-key").load() == {}
    rec.remove()
    assert not rec.path.exists()


def test_sha256_matches_hashlib(tmp_path: Path) -> None:
    import hashlib

    p = tmp_path / "x"
    p.write_bytes(b"x" * 3_000_000)
    assert sha256_file(p) == hashlib.sha256(b"x" * 3_000_000).hexdigest()


@pytest.mark.parametrize(
    "kwargs",
    [{"mode": "huge"}, {"task": "poem"}, {"formats": ("docx",)}, {"formats": ()}, {"max_tiles": 10},
     {"batch_size": 0}, {"min_mode": "large", "max_mode": "small"}, {"max_new_tokens": 0}],
)
def test_invalid_options_are_usage_errors(kwargs: dict) -> None:
    with pytest.raises(UsageError):
        ConvertOptions(model="m", **kwargs)


def test_output_settings_exclude_runtime_knobs() -> None:
    a = ConvertOptions(model="m", device="cpu", batch_size=2).output_settings()
    b = ConvertOptions(model="m", device="cuda", batch_size=64).output_settings()
    assert a == b and a["mode"] == "auto"


def test_a_kept_page_stands_only_under_settings_that_would_repeat_it() -> None:
    ended = _page(0)  # ended on its own after 3 tokens
    cut = PageResult(index=1, width=10, height=20, mode="base", grid=(1, 1), vision_tokens=256, image_embeddings=273,
                     generated_tokens=8, truncated=True)
    assert page_still_valid(ended, False, 3) and page_still_valid(ended, True, 100)
    assert not page_still_valid(ended, False, 2)  # the new limit would cut it
    assert page_still_valid(cut, False, 8) and not page_still_valid(cut, True, 8)
    assert not page_still_valid(cut, False, 9) and not page_still_valid(cut, False, 7)
