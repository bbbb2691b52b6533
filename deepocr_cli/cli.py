"""Command-line interface (Typer): thin commands over the library; the only place that exits the process."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from deepocr_cli import __version__
from deepocr_cli.cli_support import Command, error_report
from deepocr_cli.cli_support import bug as _bug
from deepocr_cli.cli_support import fail as _fail
from deepocr_cli.cli_support import print_json as _print_json
from deepocr_cli.cli_support import quiet_broken_pipe as _quiet_broken_pipe
from deepocr_cli.cli_support import rates_identity as _rates_identity
from deepocr_cli.cli_support import read_paths as _read_paths
from deepocr_cli.cli_support import setup_logging as _setup_logging
from deepocr_cli.cli_support import sigterm_as_interrupt as _sigterm_as_interrupt
from deepocr_cli.cli_support import split_csv as _split_csv
from deepocr_cli.errors import DeepOcrError, ExitCode, UsageError
from deepocr_cli.options import AUTO, DEVICE_RE, DTYPES, ConvertOptions, default_model

log = logging.getLogger("deepocr")

EXIT_CODES_HELP = """\b
Exit codes:
  0    every input converted, restored, up to date, or busy
  1    unexpected error (a bug; rerun with -v for the traceback)
  2    usage error (bad option or argument)
  3    partial: some inputs failed, or have failed or truncated pages
  4    no supported input found
  5    output not writable (checked before the model loads)
  6    model unavailable (no weights and no network, or a bad checkpoint)
  7    out of memory even at batch size 1
  130  interrupted (Ctrl-C or SIGTERM); finished pages stay recorded
Busy: another deepocr run holds the input and converts it; it is
reported and skipped, and that run reports its outcome."""

#: Option groups in --help, in this order. Flags other issues add take one of these panels.
INPUT, MODEL, OUTPUT, RUN = "Input", "Model", "Output", "Run"

app = typer.Typer(
    name="deepocr",
    help="Convert PDFs and images to Markdown and JSON with DeepSeek-OCR.\n\n" + EXIT_CODES_HELP,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 80},
)

MODEL_HELP = "Hub id or local checkpoint folder (default: env DEEPOCR_MODEL, else deepseek-ai/DeepSeek-OCR)."
MODES_HELP = "auto, tiny (64 vision tokens), small (100), base (256), large (400), gundam (256 + 100 per tile)"


def _parse_shard(text: str | None) -> tuple[int, int] | None:
    from deepocr_cli.scale.shard import parse_shard

    return parse_shard(text) if text else None


def _version(value: bool) -> None:
    if value:
        typer.echo(f"deepocr {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")] = False,
) -> None:
    """Convert PDFs and images to Markdown and JSON with DeepSeek-OCR."""


def _formats_help() -> str:
    from deepocr_cli.outputs.formats import FORMATS

    return "Outputs to write, a comma list of " + ", ".join(f"{f.name} (NAME{f.suffix})" for f in FORMATS.values()) + "."


CONVERT_HELP = (
    "Convert PDFs and images to Markdown and JSON, next to each source.\n\n"
    "Each page gets a resolution mode (a vision-token budget); --mode auto (the default) picks the cheapest mode "
    "that keeps the page's text-to-vision-token ratio under --max-compression.\n\n"
    "Outputs: NAME.md, NAME.json, NAME_images/ (figure crops) by default; --format adds a searchable PDF, ALTO "
    "XML, plain text or an HTML review page.\n\n"
    "A rerun does only the missing work: a document is "
    "up to date when every requested output is there and unchanged for the same source, checkpoint (by content, "
    "however --model spells it) and settings; a deleted NAME.md (or any requested format missing) is restored from NAME.json without the model; "
    "failed pages are retried and finished ones kept; truncated pages are kept (exit 3) until "
    "--max-new-tokens changes or --retry-truncated is given, and a new limit keeps the pages that ended within it; "
    "an interrupted run resumes."
)



def _pdf_password(password: str | None, password_file: Path | None) -> str | None:
    """The PDF password: --password (or DEEPOCR_PDF_PASSWORD), else the first line of --password-file."""
    if password:
        return password
    if password_file is None:
        return None
    try:
        lines = password_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        # the file's name only: its content is the secret
        raise UsageError(f"--password-file {password_file}: cannot read it ({type(e).__name__})") from None
    return lines[0] if lines else None

@app.command(
    cls=Command,
    help=CONVERT_HELP,
    epilog=EXIT_CODES_HELP + "\n\n\b\nExamples:\n"
    "  deepocr convert ./papers\n"
    "  deepocr convert scan.pdf --mode gundam --pages 1-3,7\n"
    "  deepocr convert ./archive -o ./out --format json --json > report.json\n"
    "  find . -name '*.pdf' -print0 | deepocr convert - -0\n"
    "  deepocr convert page.png --stdout | less\n"
    "  deepocr convert ./archive --reparse     # new parser rules, no GPU",
)
def convert(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders; `-` reads paths from stdin.", show_default=False,
                                                metavar="PATH")],
    recursive: Annotated[bool, typer.Option("--recursive/--no-recursive", help="Descend into folders.", rich_help_panel=INPUT)] = True,
    include: Annotated[list[str] | None, typer.Option(help="Only files matching this glob (repeatable).", metavar="GLOB", rich_help_panel=INPUT)] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="Skip files matching this glob (repeatable).", metavar="GLOB", rich_help_panel=INPUT)] = None,
    pages: Annotated[str | None, typer.Option(help="Page ranges, 1-based: 1-3,7,10-.", metavar="RANGES", rich_help_panel=INPUT)] = None,
    null: Annotated[bool, typer.Option("-0", "--null", help="With `-`: paths on stdin are NUL-separated (find -print0).", rich_help_panel=INPUT)] = False,
    skip_blank: Annotated[bool, typer.Option("--skip-blank/--no-skip-blank", help="Pages showing no text and no figure skip the model (JSON: blank).", rich_help_panel=INPUT)] = True,
    rotate: Annotated[bool, typer.Option("--rotate/--no-rotate", help="Turn pages scanned at 90/180/270 degrees upright before the model.", rich_help_panel=INPUT)] = True,
    deskew: Annotated[bool, typer.Option("--deskew/--no-deskew", help="Straighten pages skewed up to 10 degrees before the model.", rich_help_panel=INPUT)] = True,
    password: Annotated[str | None, typer.Option(envvar="DEEPOCR_PDF_PASSWORD", show_default=False, metavar="PW", help="User password of encrypted PDFs (visible to `ps`: prefer the env var or --password-file).", rich_help_panel=INPUT)] = None,
    password_file: Annotated[Path | None, typer.Option(help="Read the PDF password from the first line of this file.", dir_okay=False, metavar="FILE", rich_help_panel=INPUT)] = None,
    max_image_pixels: Annotated[int, typer.Option(help="Refuse images over this many pixels (0: no cap).", metavar="N", rich_help_panel=INPUT)] = 300_000_000,
    model: Annotated[str, typer.Option(help=MODEL_HELP, metavar="ID|DIR", show_default=False, rich_help_panel=MODEL)] = "",
    revision: Annotated[str | None, typer.Option(help="Hub revision (branch, tag or commit) to pin.", metavar="REV", rich_help_panel=MODEL)] = None,
    device: Annotated[str, typer.Option(help="auto (cuda > mps > cpu), cpu, mps, cuda or cuda:N.", metavar="DEV", rich_help_panel=MODEL)] = "auto",
    dtype: Annotated[str | None, typer.Option(help="bfloat16, float16 or float32 (default: bf16 on CUDA, fp32 else).", metavar="TYPE", rich_help_panel=MODEL)] = None,
    mode: Annotated[str, typer.Option("--mode", "-m", help=f"Resolution mode per page: {MODES_HELP}.", metavar="MODE", rich_help_panel=MODEL)] = AUTO,
    max_compression: Annotated[float, typer.Option(help="auto: most text tokens per vision token; ~97% precision below 10x, ~60% at 20x.", metavar="X", rich_help_panel=MODEL)] = 10.0,
    min_mode: Annotated[str, typer.Option(help="auto: cheapest mode allowed.", metavar="MODE", rich_help_panel=MODEL)] = "tiny",
    max_mode: Annotated[str, typer.Option(help="auto: most expensive mode allowed.", metavar="MODE", rich_help_panel=MODEL)] = "gundam",
    escalate: Annotated[bool, typer.Option("--escalate/--no-escalate", help="auto: rerun a truncated or over-compressed page one mode up.", rich_help_panel=MODEL)] = True,
    max_tiles: Annotated[int, typer.Option(help="Most 640-px tiles per Gundam page (2..9).", metavar="N", rich_help_panel=MODEL)] = 6,
    task: Annotated[str, typer.Option(help="markdown (layout blocks with boxes) or free (plain OCR).", metavar="TASK", rich_help_panel=MODEL)] = "markdown",
    max_new_tokens: Annotated[int, typer.Option(help="Generation limit per page; a page that hits it is truncated.", metavar="N", rich_help_panel=MODEL)] = 8192,
    deep: Annotated[bool, typer.Option("--deep/--no-deep", help="Parse figures in a second pass: charts to tables, molecules to SMILES, captions.", rich_help_panel=MODEL)] = True,
    deep_max_per_page: Annotated[int, typer.Option(help="Most figures parsed per page.", metavar="N", rich_help_panel=MODEL)] = 8,
    output_dir: Annotated[Path | None, typer.Option("--output-dir", "-o", help="Write here, mirroring the input tree (default: next to each source).", metavar="DIR", rich_help_panel=OUTPUT)] = None,
    fmt: Annotated[str, typer.Option("--format", help=_formats_help(), metavar="LIST", rich_help_panel=OUTPUT)] = "md,json",
    render_molecules: Annotated[bool, typer.Option("--render-molecules", help="Draw each recognised molecule as PNG beside its crop.", rich_help_panel=OUTPUT)] = False,
    stdout: Annotated[bool, typer.Option("--stdout", help="Print the Markdown of a single input to stdout; write no files.", rich_help_panel=OUTPUT)] = False,
    reparse: Annotated[bool, typer.Option("--reparse", help="Rebuild NAME.md/NAME.json/crops from the raw output stored in NAME.json with the current parser; no model is loaded.", rich_help_panel=RUN)] = False,
    force: Annotated[bool, typer.Option("--force", help="Reconvert even if outputs are up to date.", rich_help_panel=RUN)] = False,
    retry_truncated: Annotated[bool, typer.Option("--retry-truncated", help="Retry pages an earlier run left truncated, with the same settings.", rich_help_panel=RUN)] = False,
    batch_size: Annotated[int | None, typer.Option(help="Pages per forward pass (default: from free memory).", metavar="N", rich_help_panel=RUN)] = None,
    json_report: Annotated[bool, typer.Option("--json", help="Print one JSON run report on stdout, whatever the exit code.", rich_help_panel=RUN)] = False,
    devices: Annotated[str | None, typer.Option(help="One engine process per device, sharing the pages: cuda:0,cuda:1, all, or cpu,cpu.", metavar="LIST", rich_help_panel=RUN)] = None,
    ray: Annotated[str | None, typer.Option(help="Run the model on Ray actors: local, auto or ray://host:port (needs deepocr-cli[ray]).", metavar="ADDR", rich_help_panel=RUN)] = None,
    workers: Annotated[int | None, typer.Option(help="With --ray: model replicas (default: one per GPU of the cluster).", metavar="N", rich_help_panel=RUN)] = None,
    worker_retries: Annotated[int, typer.Option(help="Times a page whose worker died is retried elsewhere before it is failed.", metavar="N", rich_help_panel=RUN)] = 2,
    worker_timeout: Annotated[float | None, typer.Option(help="With --devices/--ray: a worker that holds a batch longer than this many seconds per page is killed as hung and its pages retried (default: wait).", metavar="SECONDS", rich_help_panel=RUN)] = None,
    shard: Annotated[str | None, typer.Option(help="Convert only shard I of N (0-based): a stable hash of each document's path.", metavar="I/N", rich_help_panel=RUN)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.", rich_help_panel=RUN)] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More detail; -vv for debug logs.", rich_help_panel=RUN)] = 0,
) -> None:
    _setup_logging(verbose, quiet)
    _sigterm_as_interrupt()
    from deepocr_cli.run.convert import convert as run_convert
    from deepocr_cli.run.report import RunReport

    report = RunReport()

    def failed(code: ExitCode, message: str, exit_: typer.Exit) -> typer.Exit:
        if json_report:
            _print_json(error_report(code, message, report))
        return exit_

    try:
        if stdout and json_report:
            raise UsageError("--stdout and --json both write to stdout; use one (--json reports the run, "
                             "--stdout prints the Markdown)")
        options = ConvertOptions(
            mode=mode, model=model or default_model(), revision=revision, device=device, dtype=dtype,
            batch_size=batch_size, max_tiles=max_tiles, pages=pages, recursive=recursive,
            include=tuple(include or ()), exclude=tuple(exclude or ()), output_dir=output_dir,
            formats=_split_csv(fmt), force=force, task=task, max_new_tokens=max_new_tokens,
            max_compression=max_compression, min_mode=min_mode, max_mode=max_mode, escalate=escalate,
            deep=deep, deep_max_per_page=deep_max_per_page, render_molecules=render_molecules, stdout=stdout,
            skip_blank=skip_blank, rotate=rotate, deskew=deskew, password=_pdf_password(password, password_file),
            retry_truncated=retry_truncated, max_image_pixels=max_image_pixels or None,
            devices=_split_csv(devices) if devices else (), ray=ray, workers=workers, worker_retries=worker_retries,
            worker_timeout=worker_timeout, shard=_parse_shard(shard),
        )
        input_paths = _read_paths(paths, null)
        from deepocr_cli.progress import CliReporter

        with CliReporter(quiet=quiet or stdout and not verbose, verbose=verbose) as reporter:
            if reparse:
                from deepocr_cli.run.reparse import reparse as run_reparse

                report = run_reparse(input_paths, options, reporter=reporter)
            else:
                run_convert(input_paths, options, reporter=reporter, report=report)
    except DeepOcrError as e:
        raise failed(e.exit_code, str(e), _fail(e, verbose)) from None
    except KeyboardInterrupt:
        typer.echo("deepocr: interrupted; finished pages are kept and a rerun resumes", err=True)
        raise failed(ExitCode.INTERRUPTED, "interrupted", typer.Exit(int(ExitCode.INTERRUPTED))) from None
    except Exception as e:  # noqa: BLE001 - the one place that turns a bug into exit 1
        raise failed(ExitCode.INTERNAL, f"{type(e).__name__}: {e}", _bug(e, verbose)) from None
    if stdout:
        for md in report.markdown.values():
            sys.stdout.write(md)
    if json_report:
        _print_json(report.to_json())
    if not quiet:
        from deepocr_cli.progress import summary_line

        typer.echo(summary_line(report), err=True)
    raise typer.Exit(int(report.exit_code))


@app.command(cls=Command, epilog=EXIT_CODES_HELP + "\n\n\b\nExamples:\n  deepocr infer page.png --mode base\n"
             "  deepocr infer a.png b.png c.png --batch-size 2 --json --max-new-tokens 64")
def infer(
    images: Annotated[list[Path], typer.Argument(help="Image files.", exists=True, dir_okay=False, metavar="IMAGE...")],
    model: Annotated[str, typer.Option(help=MODEL_HELP, metavar="ID|DIR", show_default=False, rich_help_panel=MODEL)] = "",
    revision: Annotated[str | None, typer.Option(help="Hub revision to pin.", metavar="REV", rich_help_panel=MODEL)] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, mps, cuda or cuda:N.", metavar="DEV", rich_help_panel=MODEL)] = "auto",
    dtype: Annotated[str | None, typer.Option(help="bfloat16, float16 or float32.", metavar="TYPE", rich_help_panel=MODEL)] = None,
    mode: Annotated[str, typer.Option("--mode", "-m", help="tiny, small, base, large or gundam.", metavar="MODE", rich_help_panel=MODEL)] = "gundam",
    max_tiles: Annotated[int, typer.Option(help="Most Gundam tiles (2..9).", metavar="N", rich_help_panel=MODEL)] = 6,
    prompt: Annotated[str | None, typer.Option(help="Prompt with one <image> (default: grounded Markdown prompt).", metavar="TEXT", rich_help_panel=MODEL)] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Generation limit.", metavar="N", rich_help_panel=MODEL)] = 8192,
    batch_size: Annotated[int | None, typer.Option(help="Sequences decoding at once (default: from memory).", min=1, metavar="N", rich_help_panel=MODEL)] = None,
    ngram_size: Annotated[int, typer.Option(help="No-repeat n-gram size (0 disables).", metavar="N", rich_help_panel=MODEL)] = 20,
    ngram_window: Annotated[int, typer.Option(help="No-repeat n-gram window.", metavar="N", rich_help_panel=MODEL)] = 50,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON line per image, in input order: prompt ids, vision tokens, first-step top-5 logits, generated ids and text.", rich_help_panel=OUTPUT)] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="Tracebacks on errors.", rich_help_panel=RUN)] = 0,
) -> None:
    """Run the model on images and print their raw output (special tokens kept).

    This is the fidelity probe: with --json it prints what is needed to compare a checkpoint's
    greedy output token for token with the official implementation. All images go through the
    continuous-batching engine together; the output of each is the same whatever --batch-size.
    The engine's metrics go to stderr.
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
        if not DEVICE_RE.fullmatch(device):
            raise typer.BadParameter(f"must be auto, cpu, mps, cuda or cuda:N, got {device!r}", param_hint="--device")
        if dtype is not None and dtype.lower() not in DTYPES:
            raise typer.BadParameter(f"must be bfloat16, float16 or float32, got {dtype!r}", param_hint="--dtype")
        from deepocr_cli.engine import load_engine
        from deepocr_cli.model import NGramConfig

        engine = load_engine(model or default_model(), revision=revision, device=device, dtype=dtype)
        requests, errors = [], {}
        for i, path in enumerate(images):
            try:
                with Image.open(path) as img:
                    img.load()
                    requests.append(engine.prepare(img, mode_, prompt or prompts.MARKDOWN, 2, max_tiles, tag=i))
            except (OSError, DeepOcrError) as e:  # one bad image: its own error line, the others go on
                errors[i] = f"cannot read image: {e}"
        ngram = NGramConfig(size=ngram_size, window=ngram_window, enabled=ngram_size > 0)
        results = {r.tag: r for r in engine.generate(requests, max_new_tokens=max_new_tokens,
                                                      batch_size=batch_size, ngram=ngram)}
    except DeepOcrError as e:
        raise _fail(e, verbose) from None
    except KeyboardInterrupt:
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    for i, path in enumerate(images):
        res = results.get(i)
        if res is None:
            out = {"image": str(path), "error": errors[i]}
            typer.echo(f"deepocr: {path}: {errors[i]}", err=True)
        else:
            out = {
                "image": str(path), "model": engine.model_id, "mode": mode_.value,
                "grid": list(next(r.image.grid for r in requests if r.tag == i)),
                "prompt_ids": res.prompt_ids, "num_vision_tokens": res.num_image_embeddings,
                "first_top5": [{"id": t, "logit": v} for t, v in res.first_top5],
                "generated_ids": res.token_ids, "generated_tokens": res.generated_tokens,
                "truncated": res.truncated, "text": res.text, "seconds": round(res.seconds, 3),
            }
        if json_out:
            sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")
        elif res is not None:
            sys.stdout.write((f"==> {path} <==\n" if len(images) > 1 else "") + res.text + "\n")
    from deepocr_cli.progress import engine_line

    typer.echo(f"deepocr: {len(results)} images" + engine_line(engine.metrics.report()), err=True)
    bad = errors or any(r.truncated for r in results.values())
    raise typer.Exit(int(ExitCode.PARTIAL if bad else ExitCode.OK))


@app.command(cls=Command, epilog=EXIT_CODES_HELP + "\n\n\b\nExamples:\n  deepocr plan ./papers\n"
             "  deepocr plan ./papers | sort -k6 -n | tail\n  deepocr plan scan.pdf --json | jq '.totals'")
def plan(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders; `-` reads paths from stdin.", show_default=False, metavar="PATH")],
    recursive: Annotated[bool, typer.Option("--recursive/--no-recursive", help="Descend into folders.", rich_help_panel=INPUT)] = True,
    include: Annotated[list[str] | None, typer.Option(help="Only files matching this glob (repeatable).", metavar="GLOB", rich_help_panel=INPUT)] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="Skip files matching this glob (repeatable).", metavar="GLOB", rich_help_panel=INPUT)] = None,
    pages: Annotated[str | None, typer.Option(help="Page ranges, 1-based: 1-3,7.", metavar="RANGES", rich_help_panel=INPUT)] = None,
    null: Annotated[bool, typer.Option("-0", "--null", help="With `-`: NUL-separated paths on stdin.", rich_help_panel=INPUT)] = False,
    skip_blank: Annotated[bool, typer.Option("--skip-blank/--no-skip-blank", help="Count blank pages at no tokens, as convert skips them.", rich_help_panel=INPUT)] = True,
    password: Annotated[str | None, typer.Option(envvar="DEEPOCR_PDF_PASSWORD", show_default=False, metavar="PW", help="User password of encrypted PDFs (visible to `ps`: prefer the env var or --password-file).", rich_help_panel=INPUT)] = None,
    password_file: Annotated[Path | None, typer.Option(help="Read the PDF password from the first line of this file.", dir_okay=False, metavar="FILE", rich_help_panel=INPUT)] = None,
    max_compression: Annotated[float, typer.Option(help="Most text tokens per vision token (10 keeps ~97% precision).", metavar="X", rich_help_panel=MODEL)] = 10.0,
    min_mode: Annotated[str, typer.Option(help="Cheapest mode allowed.", metavar="MODE", rich_help_panel=MODEL)] = "tiny",
    max_mode: Annotated[str, typer.Option(help="Most expensive mode allowed.", metavar="MODE", rich_help_panel=MODEL)] = "gundam",
    max_tiles: Annotated[int, typer.Option(help="Most Gundam tiles (2..9).", metavar="N", rich_help_panel=MODEL)] = 6,
    model: Annotated[str, typer.Option(help="Checkpoint whose measured speed estimates the time (as --model of convert; never downloaded).",
                                       metavar="ID|DIR", show_default=False, rich_help_panel=MODEL)] = "",
    device: Annotated[str, typer.Option(help="Device whose measured speed estimates the time: auto, cpu, cuda, mps.", metavar="DEV", rich_help_panel=MODEL)] = "auto",
    json_out: Annotated[bool, typer.Option("--json", help="Print the plan as JSON on stdout (schema_version 1, see README).", rich_help_panel=OUTPUT)] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More detail.", rich_help_panel=RUN)] = 0,
) -> None:
    """Dry run of --mode auto: each page's estimated text and the mode it would get. No model is loaded.

    On a terminal the plan is a table; piped, it is plain aligned text (one row per page). Time estimates appear once convert has measured this checkpoint on this device (tokens per second per mode); none are made up.
    """
    _setup_logging(verbose, quiet=False)
    from deepocr_cli.planning.plan import plan_documents, render_plan_table, render_plan_text

    try:
        options = ConvertOptions(
            mode=AUTO, model=model or default_model(), device=device, max_compression=max_compression,
            min_mode=min_mode, max_mode=max_mode, max_tiles=max_tiles, pages=pages, recursive=recursive,
            include=tuple(include or ()), exclude=tuple(exclude or ()), skip_blank=skip_blank,
            password=_pdf_password(password, password_file),
        )
        key, dev = _rates_identity(options)
        result = plan_documents(_read_paths(paths, null), options, model_key=key, device=dev)
    except DeepOcrError as e:
        if json_out:
            _print_json(error_report(e.exit_code, str(e)))
        raise _fail(e, verbose) from None
    except KeyboardInterrupt:
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    failed = any(f.get("error") for f in result["files"])
    try:
        if json_out:
            _print_json(result)
        elif sys.stdout.isatty():
            render_plan_table(result)
        else:
            sys.stdout.write(render_plan_text(result))
            sys.stdout.flush()
    except BrokenPipeError:
        _quiet_broken_pipe()
    raise typer.Exit(int(ExitCode.PARTIAL if failed else ExitCode.OK))


@app.command(
    name="parse", cls=Command,
    epilog=EXIT_CODES_HELP + "\n\n\b\nExamples:\n  jq -r '.pages[0].raw_text' paper.json | deepocr parse -\n"
    "  deepocr parse page.txt --format json --width 1191 --height 1684\n"
    "  deepocr parse answer.txt --figure",
)
def parse_raw(
    file: Annotated[str, typer.Argument(help="Raw model output of one page (as the JSON's raw_text), or - for stdin.", show_default=False, metavar="FILE")],
    width: Annotated[int, typer.Option(help="Width in pixels of the page the model saw.", metavar="PX", rich_help_panel=INPUT)] = 1000,
    height: Annotated[int, typer.Option(help="Height in pixels of the page the model saw.", metavar="PX", rich_help_panel=INPUT)] = 1400,
    task: Annotated[str, typer.Option(help="markdown (grounded layout blocks) or free (plain OCR).", metavar="TASK", rich_help_panel=INPUT)] = "markdown",
    figure: Annotated[bool, typer.Option("--figure", help="The text is a deep-parsing answer to `Parse the figure.`", rich_help_panel=INPUT)] = False,
    truncated: Annotated[bool, typer.Option("--truncated", help="The output hit the token limit (raw_text has no EOS to tell).", rich_help_panel=INPUT)] = False,
    fmt: Annotated[str, typer.Option("--format", help="md (what NAME.md holds for the page) or json (its page object in NAME.json).", metavar="FMT", rich_help_panel=OUTPUT)] = "md",
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
    try:
        app()
    except BrokenPipeError:  # output piped into a reader that quit early
        _quiet_broken_pipe()
        sys.exit(0)
