"""The engine tests' shared engine: the suite's tiny random checkpoint, loaded once per module on the CPU."""

from __future__ import annotations

import pytest

from deepocr_cli.engine import load_engine


@pytest.fixture(scope="module")
def engine(random_checkpoint):
    return load_engine(str(random_checkpoint), device="cpu")
