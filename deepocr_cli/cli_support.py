"""What the commands of `cli` share: logging setup, error exits, the one JSON report `--json` promises, stdin
paths, quiet broken pipes, and the help formatting (named placeholders, never Python type tags)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from typer.core import TyperArgument, TyperCommand, TyperOption

from deepocr_cli.errors import DeepOcrError, ExitCode
from deepocr_cli.options import ConvertOptions

if TYPE_CHECKING:
    from deepocr_cli.run.report import RunReport

log = logging.getLogger("deepocr")


class Command(TyperCommand):
    """A command whose usage errors still print the one JSON report `--json` promises (exit 2)."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except Exception as e:
            # Click's UsageError (Typer vendors its own click): exit code 2 and a formatted message.
            if "--json" in args and getattr(e, "exit_code", None) == ExitCode.USAGE and hasattr(e, "format_message"):
                print_json(error_report(ExitCode.USAGE, e.format_message()))
            raise


def metavar_only(self: TyperOption | TyperArgument, ctx: typer.Context) -> str | None:
    """--help shows a value's named placeholder (N, PATH, RANGES) or nothing, never a Python type tag."""
    return self.metavar


# Typer prints the annotation (`<bool>`, `<list[Path]>`) beside each option; the placeholders read better.
TyperOption.display_type_rich = metavar_only  # type: ignore[method-assign]
TyperArgument.display_type_rich = metavar_only  # type: ignore[method-assign]


def setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level if verbose > 1 else logging.WARNING)
    log.setLevel(level)
    # Python warnings from libraries (Pillow, PyMuPDF, torch) never reach stderr raw: they go through logging,
    # shown only with -vv. deepocr reports what matters about an input itself (README, "Reliability").
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.DEBUG if verbose > 1 else logging.CRITICAL)


def sigterm_as_interrupt() -> None:
    """SIGTERM (cron timeouts, `kill`) stops a run like Ctrl-C: finished results stay written."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError):  # not the main thread (e.g. inside a test runner)
        signal.signal(signal.SIGTERM, handler)


def fail(err: DeepOcrError, verbose: int) -> typer.Exit:
    typer.echo(f"deepocr: error: {err}", err=True)
    if verbose:
        traceback.print_exc(file=sys.stderr)
    return typer.Exit(int(err.exit_code))


def bug(err: BaseException, verbose: int) -> typer.Exit:
    typer.echo(f"deepocr: unexpected error: {type(err).__name__}: {err}", err=True)
    if verbose:
        traceback.print_exc(file=sys.stderr)
    else:
        typer.echo("deepocr: rerun with -v for the traceback, and please report it", err=True)
    return typer.Exit(int(ExitCode.INTERNAL))


def error_report(code: ExitCode, error: str, report: RunReport | None = None) -> dict:
    """The `--json` report of a run that ended on an error: the same shape as a finished run's, with what it
    did before the error (files reported so far), ``status`` "error" (or "interrupted") and the error."""
    from deepocr_cli.run.report import RunReport

    out = (report or RunReport()).to_json()
    out.update(status="interrupted" if code == ExitCode.INTERRUPTED else "error", exit_code=int(code), error=error)
    return out


def print_json(data: dict) -> None:
    from deepocr_cli.outputs.paths import escape_surrogates

    # a non-UTF-8 file name's undecodable bytes as \\udcNN escapes, as in the JSON outputs (README, "Inputs")
    sys.stdout.write(escape_surrogates(json.dumps(data, indent=2, ensure_ascii=False)) + "\n")
    sys.stdout.flush()


def read_paths(paths: list[Path], null: bool) -> list[Path]:
    """Expand `-` into paths read from stdin (one per line, or NUL-separated with -0)."""
    out: list[Path] = []
    for p in paths:
        if str(p) == "-":
            data = sys.stdin.read()
            items = data.split("\0") if null else data.splitlines()
            out.extend(Path(x) for x in items if x.strip())
        else:
            out.append(p)
    return out


def split_csv(values: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in values.split(",") if v.strip())


def rates_identity(options: ConvertOptions) -> tuple[str | None, str | None]:
    """The checkpoint fingerprint and device type whose measured rates `plan` uses; (None, None) when the
    checkpoint is not on this machine (plan never downloads it) or no rates were measured at all."""
    from deepocr_cli.planning.rates import rates_path

    if not rates_path().is_file():
        return None, None
    from deepocr_cli.checkpoints import checkpoint_identity

    try:
        key = checkpoint_identity(options.model, options.revision, download=False).key
    except DeepOcrError:
        return None, None
    device = options.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else (
            "mps" if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available() else "cpu")
    return key, device


def quiet_broken_pipe() -> None:
    """The reader went away (`| head`): stop writing, exit as if done, and keep Python's exit flush quiet."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
