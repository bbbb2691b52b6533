"""`convert --reparse`: rebuild NAME.md / NAME.json / crops from the ``raw_text`` each NAME.json already holds, with
the current parser, without loading the model.

Crops need the page image, not the model: the source page is rendered again at the size the model saw, and a page
that was turned or straightened for the model is turned and straightened again the same way, so its crops come out
upright like the first conversion's. When the source has changed since it was converted (its SHA-256 differs) or cannot be read, crops are not redrawn and the
old crop files stay linked where their boxes are unchanged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from deepocr_cli.errors import DeepOcrError, InputError
from deepocr_cli.inputs.discover import SourceDoc
from deepocr_cli.inputs.render import open_document
from deepocr_cli.options import ConvertOptions
from deepocr_cli.outputs.crops import save_page_crops
from deepocr_cli.outputs.formats import FORMATS, write_document
from deepocr_cli.outputs.markdown import render_markdown
from deepocr_cli.outputs.paths import OutputPaths
from deepocr_cli.outputs.reparse import reparse_page
from deepocr_cli.outputs.results import PageResult
from deepocr_cli.outputs.stored import load_stored
from deepocr_cli.planning.scan import ScanVerdict
from deepocr_cli.planning.upright import PageTransform, prepare_page
from deepocr_cli.run.convert import assign_outputs, discover
from deepocr_cli.run.report import FileReport, Reporter, RunReport, file_failed
from deepocr_cli.run.scanprep import map_page_back, stored_transform
from deepocr_cli.run.state import sha256_file, write_state

log = logging.getLogger(__name__)


def reparse(paths: Sequence[Path], options: ConvertOptions, reporter: Reporter | None = None) -> RunReport:
    """Re-render every input's outputs from its stored raw model output.

    Args:
        paths: the same inputs `convert` took (files or folders); each needs its NAME.json.
        options: where outputs are (``output_dir``), which formats to write, ``stdout``.
        reporter: progress sink.

    Returns:
        The run report: ``converted`` per rebuilt file, ``failed`` (with the reason) per file without a usable
        JSON; nothing is half-written.

    Raises:
        NoInputError: no supported input.
    """
    start = time.perf_counter()
    reporter = reporter or Reporter()
    report = RunReport()
    docs = discover(paths, options, report, reporter)
    for src, out in zip(docs, assign_outputs(docs, options.output_dir), strict=True):
        try:
            fr = _reparse_one(src, out, options, report)
        except DeepOcrError as e:
            file_failed(report, reporter, str(src.path), str(e))
            continue
        except OSError as e:
            file_failed(report, reporter, str(src.path), f"output not writable: {e.strerror or e}", output=True)
            continue
        report.files.append(fr)
        reporter.doc_done(fr)
    report.wall_s = time.perf_counter() - start
    return report


def _reparse_one(src: SourceDoc, out: OutputPaths, options: ConvertOptions, report: RunReport) -> FileReport:
    try:
        doc = load_stored(out.json, src.path)
    except FileNotFoundError:
        raise DeepOcrError(f"{out.json}: no JSON output to reparse; convert it first") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DeepOcrError(f"{out.json}: not a deepocr JSON output ({type(e).__name__}: {e})") from None
    pages = doc.pages
    task = doc.settings.get("task", "markdown")
    old_links = {
        (p.index, tuple(b.boxes)): (b.index, list(b.image_paths)) for p in pages for b in p.blocks if b.image_paths
    }
    transforms: dict[int, PageTransform | None] = {}
    for page in pages:
        # a page turned or straightened for the model: its raw output is in the coordinates of the image the model
        # saw; read it there (and cut its crops there, upright), then map its boxes back to the source page
        transform = transforms[page.index] = stored_transform(page)
        if transform is not None:
            page.width, page.height = transform.size
        reparse_page(page, task)
    crops_note = _redraw_crops(src, out, pages, doc.sha256, options, transforms)
    for page in pages:
        map_page_back(page, transforms[page.index])
    if crops_note:
        _keep_old_links(pages, old_links)
    fr = FileReport(
        str(src.path), "converted", "reparsed" + (f"; {crops_note}" if crops_note else ""), pages=len(pages),
        truncated_pages=sum(p.truncated for p in pages), failed_pages=sum(p.error is not None for p in pages),
        repeating_pages=sum(bool(p.repetition) for p in pages), blank_pages=sum(p.blank for p in pages),
        vision_tokens=sum(p.vision_tokens for p in pages), generated_tokens=sum(p.generated_tokens for p in pages),
    )
    if options.stdout:
        report.markdown[fr.source] = render_markdown(doc)
    else:
        # Every output the document already has is rebuilt too, so none keeps the old parser's reading.
        present = [name for name, fmt in FORMATS.items() if fmt.path(out).exists()]
        names = list(dict.fromkeys([*options.formats, *present]))
        fr.outputs = [str(p) for p in write_document(doc, out, names)]
        key = doc.settings.get("state_key")
        if key:  # the rewritten files are the current outputs of the same conversion (run.state)
            write_state(out, key, doc, names)
    return fr


def _redraw_crops(
    src: SourceDoc, out: OutputPaths, pages: list[PageResult], sha256: str, options: ConvertOptions,
    transforms: dict[int, PageTransform | None],
) -> str | None:
    """Save the crops of the reparsed image blocks (boxes still in the coordinates of the image the model saw);
    returns why they were not redrawn, if they were not."""
    wanted = [p for p in pages if any(b.label == "image" and b.boxes for b in p.blocks)]
    if not wanted or options.stdout:
        return None
    reason = None
    try:
        if sha256_file(src.path) != sha256:
            reason = "source changed since it was converted"
    except OSError as e:
        reason = f"source unreadable ({e.strerror or e})"
    if reason is not None:
        return f"crops not redrawn: {reason}"
    try:
        with open_document(src, password=options.password) as reader:
            for page in wanted:
                transform = transforms.get(page.index)
                if transform is None:
                    image = reader.render(page.index, (page.width, page.height))
                else:  # rendered as the source lies, then turned and straightened as the model saw it
                    scan = page.scan or {}
                    seen = ScanVerdict(False, {}, int(scan.get("rotation") or 0), "turned", 0.0,
                                       float(scan.get("skew") or 0.0))
                    image, _ = prepare_page(reader.render(page.index, transform.source_size), seen)
                save_page_crops(page, image, out)
                page.warnings = list(dict.fromkeys(page.warnings))
        return None
    except InputError as e:
        return f"crops not redrawn: source unreadable ({e})"


def _keep_old_links(pages: list[PageResult], old_links: dict[tuple[int, tuple], tuple[int, list[str]]]) -> None:
    """Keep the old crop files linked where a block kept its boxes (and so its crop)."""
    for page in pages:
        for block in page.blocks:
            old = old_links.get((page.index, tuple(block.boxes)))
            if block.label == "image" and old is not None:
                block.image_paths = old[1]
                block.image_path = old[1][0] if old[1] else None
