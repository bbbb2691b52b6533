"""Command-line interface (Typer): thin commands over the library; the only place that exits the process."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Annotated

import typer

from deepocr_cli import __version__
from deepocr_cli.errors import DeepOcrError, ExitCode
from deepocr_cli.options import AUTO, ConvertOptions, default_model
from deepocr_cli.outputs.formats import FORMATS

log = logging.getLogger("deepocr")

EXIT_CODES_HELP = """\b
Exit codes:
  0    all inputs converted, or skipped as up to date
  1    unexpected error (a bug; rerun with -v for the traceback)
  2    usage error (bad option or argument)
  3    partial: the run finished but some inputs failed or have truncated pages
  4    no supported input found
  5    output not writable
  6    model unavailable (no weights and no network, or a bad checkpoint)
  7    out of memory even at batch size 1
  130  interrupted (Ctrl-C or SIGTERM); finished results stay written"""

app = typer.Typer(
    name="deepocr",
    help="Convert PDFs and images to Markdown and JSON with DeepSeek-OCR.\n\n" + EXIT_CODES_HELP,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

FORMATS_HELP = ", ".join(f"{f.name} (NAME{f.suffix})" for f in FORMATS.values())
MODES_HELP = "auto, tiny (64 vision tokens), small (100), base (256), large (400), gundam (256 + 100 per tile)"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"deepocr {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")] = False,
) -> None:
    """Convert PDFs and images to Markdown and JSON with DeepSeek-OCR."""


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level if verbose > 1 else logging.WARNING)
    log.setLevel(level)


def _sigterm_as_interrupt() -> None:
    """SIGTERM (cron timeouts, `kill`) stops a run like Ctrl-C: finished results stay written."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError):  # not the main thread (e.g. inside a test runner)
        signal.signal(signal.SIGTERM, handler)


def _fail(err: DeepOcrError, verbose: int) -> typer.Exit:
    typer.echo(f"deepocr: error: {err}", err=True)
    if verbose:
        traceback.print_exc(file=sys.stderr)
    return typer.Exit(int(err.exit_code))


def _bug(err: BaseException, verbose: int) -> typer.Exit:
    typer.echo(f"deepocr: unexpected error: {type(err).__name__}: {err}", err=True)
    if verbose:
        traceback.print_exc(file=sys.stderr)
    else:
        typer.echo("deepocr: rerun with -v for the traceback, and please report it", err=True)
    return typer.Exit(int(ExitCode.INTERNAL))


def _read_paths(paths: list[Path], null: bool) -> list[Path]:
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


def _parse_shard(text: str | None) -> tuple[int, int] | None:
    from deepocr_cli.scale.shard import parse_shard

    return parse_shard(text) if text else None


def _split_csv(values: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in values.split(",") if v.strip())


@app.command(
    epilog="\b\nExamples:\n"
    "  deepocr convert ./papers                       # auto mode, Markdown+JSON next to each PDF\n"
    "  deepocr convert scan.pdf --mode gundam --pages 1-3,7\n"
    "  deepocr convert ./archive -o ./out --format json --json > report.json\n"
    "  find . -name '*.pdf' -print0 | deepocr convert - -0\n"
    "  deepocr convert page.png --stdout | less\n"
    "  deepocr convert ./archive --reparse          # new parser rules, no GPU\n\n" + EXIT_CODES_HELP
)
def convert(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders; `-` reads paths from stdin.", show_default=False)],
    mode: Annotated[str, typer.Option("--mode", "-m", help=f"Resolution mode per page: {MODES_HELP}.")] = AUTO,
    model: Annotated[str, typer.Option(help="Hub id or local checkpoint folder (env DEEPOCR_MODEL).",
                                       show_default="deepseek-ai/DeepSeek-OCR")] = "",
    revision: Annotated[str | None, typer.Option(help="Hub revision (branch, tag or commit) to pin.")] = None,
    device: Annotated[str, typer.Option(help="auto (cuda > mps > cpu), cuda, cuda:1, mps or cpu.")] = "auto",
    dtype: Annotated[str | None, typer.Option(help="bfloat16, float16 or float32 (default: bf16 on CUDA, fp32 else).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Pages per forward pass (default: from free GPU memory).")] = None,
    max_tiles: Annotated[int, typer.Option(help="Most 640-px tiles per Gundam page (2..9).")] = 6,
    pages: Annotated[str | None, typer.Option(help="Page ranges, 1-based: 1-3,7,10-.")] = None,
    recursive: Annotated[bool, typer.Option("--recursive/--no-recursive", help="Descend into folders.")] = True,
    include: Annotated[list[str] | None, typer.Option(help="Only files matching this glob (repeatable).")] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="Skip files matching this glob (repeatable).")] = None,
    output_dir: Annotated[Path | None, typer.Option("--output-dir", "-o", help="Write here, mirroring the input tree (default: next to each source).")] = None,
    fmt: Annotated[str, typer.Option("--format", help=f"Outputs to write, a comma list of {FORMATS_HELP}.")] = "md,json",
    force: Annotated[bool, typer.Option(help="Reconvert even if outputs are up to date.")] = False,
    task: Annotated[str, typer.Option(help="markdown (layout blocks with boxes) or free (plain OCR).")] = "markdown",
    max_new_tokens: Annotated[int, typer.Option(help="Generation limit per page; a page that hits it is flagged truncated.")] = 8192,
    max_compression: Annotated[float, typer.Option(help="auto mode: most text tokens per vision token. ~97% precision below 10x, ~60% at 20x.")] = 10.0,
    min_mode: Annotated[str, typer.Option(help="auto mode: cheapest mode allowed.")] = "tiny",
    max_mode: Annotated[str, typer.Option(help="auto mode: most expensive mode allowed.")] = "gundam",
    escalate: Annotated[bool, typer.Option("--escalate/--no-escalate", help="auto mode: rerun a truncated or over-compressed page one mode up.")] = True,
    deep: Annotated[bool, typer.Option("--deep/--no-deep", help="Parse figures in a second pass: charts to tables, molecules to SMILES, captions.")] = True,
    deep_max_per_page: Annotated[int, typer.Option(help="Most figures parsed per page.")] = 8,
    render_molecules: Annotated[bool, typer.Option(help="Draw each recognised molecule as PNG beside its crop.")] = False,
    null: Annotated[bool, typer.Option("-0", "--null", help="With `-`: paths on stdin are NUL-separated (find -print0).")] = False,
    stdout: Annotated[bool, typer.Option("--stdout", help="Print the Markdown of a single input to stdout; write no files.")] = False,
    reparse: Annotated[bool, typer.Option("--reparse", help="Rebuild NAME.md/NAME.json/crops from the raw output stored in NAME.json with the current parser; no model is loaded.")] = False,
    json_report: Annotated[bool, typer.Option("--json", help="Print a machine-readable run report on stdout.")] = False,
    devices: Annotated[str | None, typer.Option(help="One worker process per device, sharing the pages: cuda:0,cuda:1 | all | cpu,cpu.", rich_help_panel="Scale out")] = None,
    ray: Annotated[str | None, typer.Option(help="Run the model on Ray actors: local, auto or ray://host:port (pip install 'deepocr-cli[ray]').", rich_help_panel="Scale out")] = None,
    workers: Annotated[int | None, typer.Option(help="With --ray: model replicas (default: one per GPU of the cluster).", rich_help_panel="Scale out")] = None,
    worker_retries: Annotated[int, typer.Option(help="Times a page whose worker died is retried on another before it is marked failed.", rich_help_panel="Scale out")] = 2,
    shard: Annotated[str | None, typer.Option(help="Convert only shard I of N (0-based, e.g. 0/4): a stable hash of each document's path.", rich_help_panel="Scale out")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More detail; -vv for debug logs.")] = 0,
) -> None:
    """Convert PDFs and images to Markdown and JSON, next to each source.

    Each page gets a resolution mode (a vision-token budget); with `--mode auto` (the default) the
    cheapest mode that keeps the page's text-to-vision-token ratio under --max-compression is chosen
    from its text density. Outputs: NAME.md, NAME.json and NAME_images/ (figure crops) by default;
    --format adds a searchable PDF, ALTO XML, plain text or an HTML review page. Up-to-date outputs
    are skipped (a requested output that is missing is rebuilt from the stored JSON, without the
    model); an interrupted run resumes where it stopped.
    """
    _setup_logging(verbose, quiet)
    _sigterm_as_interrupt()
    from deepocr_cli.run.convert import convert as run_convert

    try:
        options = ConvertOptions(
            mode=mode, model=model or default_model(), revision=revision, device=device, dtype=dtype,
            batch_size=batch_size, max_tiles=max_tiles, pages=pages, recursive=recursive,
            include=tuple(include or ()), exclude=tuple(exclude or ()), output_dir=output_dir,
            formats=_split_csv(fmt), force=force, task=task, max_new_tokens=max_new_tokens,
            max_compression=max_compression, min_mode=min_mode, max_mode=max_mode, escalate=escalate,
            deep=deep, deep_max_per_page=deep_max_per_page, render_molecules=render_molecules, stdout=stdout,
            devices=_split_csv(devices) if devices else (), ray=ray, workers=workers,
            worker_retries=worker_retries, shard=_parse_shard(shard),
        )
        input_paths = _read_paths(paths, null)
        from deepocr_cli.progress import CliReporter

        with CliReporter(quiet=quiet or stdout and not verbose, verbose=verbose) as reporter:
            if reparse:
                from deepocr_cli.run.reparse import reparse as run_reparse

                report = run_reparse(input_paths, options, reporter=reporter)
            else:
                report = run_convert(input_paths, options, reporter=reporter)
    except DeepOcrError as e:
        raise _fail(e, verbose) from None
    except KeyboardInterrupt:
        typer.echo("deepocr: interrupted; finished pages are kept and a rerun resumes", err=True)
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    except Exception as e:  # noqa: BLE001 - the one place that turns a bug into exit 1
        raise _bug(e, verbose) from None
    if stdout:
        for md in report.markdown.values():
            sys.stdout.write(md)
    if json_report:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    if not quiet:
        from deepocr_cli.progress import summary_line

        typer.echo(summary_line(report), err=True)
    raise typer.Exit(int(report.exit_code))


@app.command(epilog="\b\nExamples:\n  deepocr infer page.png --mode base\n"
             "  deepocr infer page.png --model ./DeepSeek-OCR --json --max-new-tokens 64\n\n" + EXIT_CODES_HELP)
def infer(
    image: Annotated[Path, typer.Argument(help="An image file.", exists=True, dir_okay=False)],
    model: Annotated[str, typer.Option(help="Hub id or local checkpoint folder (env DEEPOCR_MODEL).",
                                       show_default="deepseek-ai/DeepSeek-OCR")] = "",
    mode: Annotated[str, typer.Option("--mode", "-m", help="tiny, small, base, large or gundam.")] = "gundam",
    prompt: Annotated[str | None, typer.Option(help="Prompt with one <image> (default: grounded Markdown prompt).")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Generation limit.")] = 8192,
    max_tiles: Annotated[int, typer.Option(help="Most Gundam tiles (2..9).")] = 6,
    device: Annotated[str, typer.Option(help="auto, cuda, mps or cpu.")] = "auto",
    dtype: Annotated[str | None, typer.Option(help="bfloat16, float16 or float32.")] = None,
    revision: Annotated[str | None, typer.Option(help="Hub revision to pin.")] = None,
    ngram_size: Annotated[int, typer.Option(help="No-repeat n-gram size (0 disables).")] = 20,
    ngram_window: Annotated[int, typer.Option(help="No-repeat n-gram window.")] = 50,
    json_out: Annotated[bool, typer.Option("--json", help="Print prompt ids, vision tokens, first-step top-5 logits, generated ids and text.")] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="Tracebacks on errors.")] = 0,
) -> None:
    """Run the model on one image and print its raw output (special tokens kept).

    This is the fidelity probe: with --json it prints what is needed to compare a checkpoint's
    greedy output token for token with the official implementation.
    """
    _setup_logging(verbose, quiet=False)
    from PIL import Image

    from deepocr_cli import prompts
    from deepocr_cli.planning.modes import Mode

    try:
        try:
            mode_ = Mode(mode)
        except ValueError:
            raise typer.BadParameter(f"unknown mode {mode!r}", param_hint="--mode") from None
        from deepocr_cli.model import NGramConfig, load_engine

        engine = load_engine(model or default_model(), revision=revision, device=device, dtype=dtype)
        try:
            img = Image.open(image)
            img.load()
        except OSError as e:
            raise typer.BadParameter(f"cannot read image: {e}", param_hint="IMAGE") from None
        t0 = time.perf_counter()
        req = engine.prepare(img, mode_, prompt or prompts.MARKDOWN, 2, max_tiles)
        ngram = NGramConfig(size=ngram_size, window=ngram_window, enabled=ngram_size > 0)
        (res,) = engine.generate([req], max_new_tokens=max_new_tokens, ngram=ngram)
        elapsed = time.perf_counter() - t0
    except DeepOcrError as e:
        raise _fail(e, verbose) from None
    except KeyboardInterrupt:
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    if json_out:
        out = {
            "model": engine.model_id, "mode": mode_.value, "grid": list(req.image.grid),
            "prompt_ids": res.prompt_ids, "num_vision_tokens": res.num_image_embeddings,
            "first_top5": [{"id": i, "logit": v} for i, v in res.first_top5],
            "generated_ids": res.token_ids, "generated_tokens": res.generated_tokens,
            "truncated": res.truncated, "text": res.text, "seconds": round(elapsed, 3),
        }
        sys.stdout.write(json.dumps(out, ensure_ascii=False, indent=2) + "\n")
    else:
        sys.stdout.write(res.text + "\n")
    raise typer.Exit(int(ExitCode.PARTIAL if res.truncated else ExitCode.OK))


@app.command(epilog="\b\nExamples:\n  deepocr plan ./papers\n  deepocr plan scan.pdf --json | jq '.totals'\n\n" + EXIT_CODES_HELP)
def plan(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders; `-` reads paths from stdin.", show_default=False)],
    max_compression: Annotated[float, typer.Option(help="Most text tokens per vision token (10 keeps ~97% precision).")] = 10.0,
    min_mode: Annotated[str, typer.Option(help="Cheapest mode allowed.")] = "tiny",
    max_mode: Annotated[str, typer.Option(help="Most expensive mode allowed.")] = "gundam",
    max_tiles: Annotated[int, typer.Option(help="Most Gundam tiles (2..9).")] = 6,
    pages: Annotated[str | None, typer.Option(help="Page ranges, 1-based: 1-3,7.")] = None,
    recursive: Annotated[bool, typer.Option("--recursive/--no-recursive")] = True,
    include: Annotated[list[str] | None, typer.Option(help="Only files matching this glob (repeatable).")] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="Skip files matching this glob (repeatable).")] = None,
    null: Annotated[bool, typer.Option("-0", "--null", help="With `-`: NUL-separated paths on stdin.")] = False,
    model: Annotated[str, typer.Option(help="Model whose measured speed estimates the time (env DEEPOCR_MODEL).",
                                       show_default="deepseek-ai/DeepSeek-OCR")] = "",
    json_out: Annotated[bool, typer.Option("--json", help="Print the plan as JSON on stdout.")] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True)] = 0,
) -> None:
    """Dry run of --mode auto: estimate each page's text and show the mode it would get. No model is loaded."""
    _setup_logging(verbose, quiet=False)
    from deepocr_cli.planning.plan import plan_documents, render_plan_table

    try:
        options = ConvertOptions(
            mode=AUTO, model=model or default_model(), max_compression=max_compression, min_mode=min_mode, max_mode=max_mode,
            max_tiles=max_tiles, pages=pages, recursive=recursive, include=tuple(include or ()),
            exclude=tuple(exclude or ()),
        )
        result = plan_documents(_read_paths(paths, null), options)
    except DeepOcrError as e:
        raise _fail(e, verbose) from None
    except KeyboardInterrupt:
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    if json_out:
        sys.stdout.write(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    else:
        render_plan_table(result)
    failed = any(f.get("error") for f in result["files"])
    raise typer.Exit(int(ExitCode.PARTIAL if failed else ExitCode.OK))


@app.command(
    name="parse",
    epilog="\b\nExamples:\n  jq -r '.pages[0].raw_text' paper.json | deepocr parse -\n"
    "  deepocr parse page.txt --format json --width 1191 --height 1684\n"
    "  deepocr parse answer.txt --figure\n\n" + EXIT_CODES_HELP,
)
def parse_raw(
    file: Annotated[str, typer.Argument(help="Raw model output of one page (as the JSON's raw_text), or - for stdin.", show_default=False)],
    fmt: Annotated[str, typer.Option("--format", help="md (what NAME.md holds for the page) or json (its page object in NAME.json).")] = "md",
    width: Annotated[int, typer.Option(help="Width in pixels of the page the model saw.")] = 1000,
    height: Annotated[int, typer.Option(help="Height in pixels of the page the model saw.")] = 1400,
    task: Annotated[str, typer.Option(help="markdown (grounded layout blocks) or free (plain OCR).")] = "markdown",
    figure: Annotated[bool, typer.Option("--figure", help="The text is a deep-parsing answer to `Parse the figure.`")] = False,
    truncated: Annotated[bool, typer.Option("--truncated", help="The output hit the token limit (raw_text has no EOS to tell).")] = False,
) -> None:
    """Print what `convert` writes for one page of raw model output, without the model.

    The same code path as `convert`: markup repairs, tables and captions, headings, loops cut to one copy.
    """
    from deepocr_cli.outputs.reparse import render_raw

    try:
        raw = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        typer.echo(f"deepocr: error: cannot read {file}: {getattr(e, 'strerror', None) or e}", err=True)
        raise typer.Exit(int(ExitCode.USAGE)) from None
    if width < 1 or height < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--width/--height")
    try:
        sys.stdout.write(render_raw(raw, fmt, width, height, task, figure, truncated))
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    raise typer.Exit(int(ExitCode.OK))


def main() -> None:
    """Console-script entry point."""
    app()
