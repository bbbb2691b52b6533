"""Exit codes and the exceptions that carry them; only the CLI turns them into process exits."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Stable, documented process exit codes of `deepocr`."""

    OK = 0  #: every input converted, or skipped as up to date
    INTERNAL = 1  #: unexpected error, i.e. a bug (traceback with -v)
    USAGE = 2  #: bad arguments
    PARTIAL = 3  #: the run finished but some inputs failed or have truncated pages
    NO_INPUT = 4  #: no supported input found
    OUTPUT = 5  #: output not writable
    MODEL = 6  #: model unavailable (no weights and no network, bad checkpoint)
    RESOURCES = 7  #: out of memory even at batch size 1
    INTERRUPTED = 130  #: Ctrl-C or SIGTERM; finished results stay written


class DeepOcrError(Exception):
    """Base of every error deepocr raises on purpose; the message says how to fix it."""

    exit_code: ExitCode = ExitCode.INTERNAL


class UsageError(DeepOcrError):
    """Invalid options or arguments."""

    exit_code = ExitCode.USAGE


class NoInputError(DeepOcrError):
    """No supported document was found among the given paths."""

    exit_code = ExitCode.NO_INPUT


class OutputError(DeepOcrError):
    """An output location cannot be written."""

    exit_code = ExitCode.OUTPUT


class ModelError(DeepOcrError):
    """The model cannot be loaded: missing weights, offline hub, bad or mismatched checkpoint."""

    exit_code = ExitCode.MODEL


class CheckpointError(ModelError):
    """A checkpoint has missing, unexpected or mis-shaped tensors, or a bad config."""


class OutOfResourcesError(DeepOcrError):
    """Out of memory even at batch size 1."""

    exit_code = ExitCode.RESOURCES


class InputError(DeepOcrError):
    """One input file cannot be read (corrupt, encrypted, empty, unsupported). Never ends a batch."""

    exit_code = ExitCode.PARTIAL
