"""Fault isolation: what one input may break, and how its failure is worded.

Every stage that touches one input (a document or a page of it) runs inside a boundary: any exception there
(``RuntimeError`` from MuPDF, ``MemoryError`` from a huge page, ``OSError``, Pillow, RDKit or tokenizer errors)
becomes that page's or document's recorded failure with a one-line `reason`, and the batch goes on. Only errors of
the run itself (`RUN_LEVEL`: the model cannot load, out of memory at batch size 1, an interrupt) end the run.

Each boundary first calls `enter(stage, source)`; tests install a hook there (`fault_hook`) that raises for one
chosen document, to prove every stage is isolated (tests/test_faults.py). Without a hook `enter` does nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from deepocr_cli.errors import InputError, ModelError, OutOfResourcesError

#: Stages of one input, in the order a document meets them.
STAGES: tuple[str, ...] = (
    "discover",  # sniffing the file's content (inputs.discover)
    "hash",  # reading it for its SHA-256 (run.convert)
    "open",  # opening it (inputs.render.open_document)
    "page_count",  # counting its pages, choosing the wanted ones, resuming
    "page_size",  # a page's size (PDF page box, image frame size)
    "render",  # rasterising a page
    "estimate",  # auto mode: text density and mode choice (planning.plan.plan_page)
    "preprocess",  # tiles and tensors for the model (engine.prepare)
    "generate",  # the model call for the page
    "parse",  # the model's markup -> blocks
    "figures",  # figure crops sent back to the model, and their answers classified
    "crops",  # figure crops and molecule drawings saved
    "write",  # each output format rendered and written
)

#: Errors that belong to the run, not to one input: never turned into a per-document failure.
RUN_LEVEL: tuple[type[BaseException], ...] = (ModelError, OutOfResourcesError)

#: Test hook: called as ``fault_hook(stage, source)`` when a boundary is entered; it may raise.
fault_hook: Callable[[str, Path], None] | None = None


def enter(stage: str, source: Path | str) -> None:
    """Mark entry into ``stage`` for ``source``; runs the test hook, if one is installed."""
    hook = fault_hook
    if hook is not None:
        hook(stage, Path(source))


def is_run_level(exc: BaseException) -> bool:
    """Whether ``exc`` must end the run (interrupt, model unavailable, out of resources at batch size 1)."""
    return not isinstance(exc, Exception) or isinstance(exc, RUN_LEVEL)


def reason(exc: BaseException, stage: str | None = None) -> str:
    """One line for the user: what failed, without a traceback.

    ``InputError`` messages are already worded for users and are kept; an ``OSError`` gives its strerror; a
    ``MemoryError`` says so; anything else is ``Type: first line of the message``. With ``stage`` the stage is
    named, as in ``render: RuntimeError: code=7: ...``.
    """
    if isinstance(exc, InputError):
        text = str(exc)
    elif isinstance(exc, FileNotFoundError):
        text = "file vanished (no longer exists)"
    elif isinstance(exc, PermissionError):
        text = "permission denied"
    elif isinstance(exc, OSError):
        text = f"{type(exc).__name__}: {exc.strerror or exc}"
    elif isinstance(exc, MemoryError):
        text = "out of memory" + (f": {exc}" if str(exc) else "")
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    text = " ".join(text.split()) or type(exc).__name__
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{stage}: {text}" if stage and not isinstance(exc, InputError) else text


def show_path(path: Path | str) -> str:
    """A path for logs and reports: undecodable bytes of a non-UTF-8 name shown as ``\\xNN``.

    File names are bytes on POSIX; Python keeps undecodable bytes as surrogate escapes, which cannot be written
    as UTF-8. This is for humans; ``source.path`` in the JSON keeps the exact name (see README, "Inputs").
    """
    raw = os.fsencode(path)
    return raw.decode("utf-8", "backslashreplace")
