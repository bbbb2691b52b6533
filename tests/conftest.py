"""Shared fixtures: offline hub, small random checkpoints in the official layout (built once per session)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Tests never reach a hub and never use a GPU, whatever the machine has.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.pop("DEEPOCR_MODEL", None)
# Measured-rate cache (deepocr_cli.planning.rates) goes to a throwaway folder, never the user's ~/.cache.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="deepocr-test-cache-")

#: What the scripted checkpoint answers for every prompt: one grounded image block, then EOS. A scripted
#: checkpoint keys each next token on the current one, so every token must be distinct: the box uses the
#: three different comma tokens of the vocabulary (",", " ,", ",\n"), which the parser accepts.
SCRIPT = "<|ref|>image<|/ref|><|det|>[[100,50 ,900,\n620]]<|/det|>\n# Hello deepocr"


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random checkpoint: real layout and code path; its greedy output never reaches EOS."""
    from deepocr_cli.model import write_random_checkpoint

    return write_random_checkpoint(tmp_path_factory.mktemp("ckpt-random"), size="tiny", seed=0)


@pytest.fixture(scope="session")
def scripted_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny checkpoint wired so greedy decoding emits SCRIPT then EOS, whatever the image."""
    from deepocr_cli.model import write_random_checkpoint

    return write_random_checkpoint(tmp_path_factory.mktemp("ckpt-scripted"), size="tiny", seed=1, script=SCRIPT)


@pytest.fixture(autouse=True)
def _every_markdown_written_is_clean(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """Every Markdown a test renders (each page, as it is rendered) and every Markdown file it writes under its
    tmp_path passes the CommonMark check (tests/mdcheck.py)."""
    from mdcheck import assert_clean_markdown

    from deepocr_cli.outputs import markdown

    original = markdown._page_markdown

    def checked(page):  # noqa: ANN001, ANN202 - same signature as the wrapped function
        parts = original(page)
        assert_clean_markdown("\n\n".join(parts))
        return parts

    monkeypatch.setattr(markdown, "_page_markdown", checked)
    yield
    tmp = request.node.funcargs.get("tmp_path") if hasattr(request.node, "funcargs") else None
    if tmp is None:
        return
    for md in Path(tmp).rglob("*.md"):
        assert_clean_markdown(md.read_text(encoding="utf-8"))
