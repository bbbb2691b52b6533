"""The last stages of a run: a finished page (crops saved, progress checkpointed) and a finished document
(status decided, outputs written atomically, lock released, outcome reported)."""

from __future__ import annotations

import logging

from deepocr_cli.boundary import enter, is_run_level, reason
from deepocr_cli.errors import InputError, OutputError
from deepocr_cli.outputs.crops import render_molecule_images, save_page_crops
from deepocr_cli.outputs.formats import write_document
from deepocr_cli.outputs.markdown import render_markdown
from deepocr_cli.outputs.results import PageError
from deepocr_cli.planning import rates
from deepocr_cli.run.jobs import Doc, Page, RunContext
from deepocr_cli.run.report import FileReport
from deepocr_cli.run.state import is_up_to_date

log = logging.getLogger(__name__)


def finish_page(ctx: RunContext, work: Page) -> None:
    """A page has its text (and figure answers): save its crops, record it durably, finish its document."""
    doc, page = work.doc, work.page
    if work.image is not None and not ctx.options.stdout:
        try:
            enter("crops", doc.src.path)
            save_page_crops(page, work.image, doc.paths)
            if ctx.options.render_molecules:
                render_molecule_images(page, doc.paths)
        except Exception as e:  # the page's boundary: crops that cannot be saved (disk, RDKit) fail the page
            if is_run_level(e):
                raise
            log.debug("crops of page %d of %r", page.index + 1, doc.src.path, exc_info=True)
            page.error = page.error or PageError("crops", f"figure crops not saved: {reason(e)}")
    work.image = None
    doc.done[page.index] = page
    if doc.partial is not None and page.error is None:  # a failed page is retried by the next run
        try:
            doc.partial.append(page)
        except Exception as e:  # noqa: BLE001 - losing the checkpoint costs a rerun some work, nothing else
            log.warning("cannot record progress of %r: %s", doc.src.path, reason(e))
    ctx.reporter.page_done(str(doc.src.path), page)
    maybe_finish_doc(ctx, doc)


def _file_report(doc: Doc) -> FileReport:
    """Decide the document's status from its pages and describe it."""
    result = doc.result
    assert result is not None
    result.pages = [doc.done[i] for i in doc.wanted]
    failed = sum(1 for p in result.pages if p.error is not None)
    truncated = sum(1 for p in result.pages if p.truncated)
    result.status = "partial" if failed or truncated else "ok"
    if failed == len(result.pages):
        result.status = "failed"
    fr = FileReport(
        str(doc.src.path), {"ok": "converted"}.get(result.status, result.status),
        pages=len(result.pages), truncated_pages=truncated, failed_pages=failed,
        repeating_pages=sum(1 for p in result.pages if p.repetition),
        vision_tokens=sum(p.vision_tokens for p in result.pages),
        generated_tokens=sum(p.generated_tokens for p in result.pages),
    )
    if failed:
        fr.reason = f"{failed} page(s) failed: " + "; ".join(
            f"p{p.index + 1}: {p.error.message}" for p in result.pages if p.error)[:500]
    elif truncated:
        fr.reason = f"{truncated} page(s) truncated (no end of sequence within --max-new-tokens)"
    elif fr.repeating_pages:
        fr.reason = f"{fr.repeating_pages} page(s) repeated text in a loop; one copy kept (see the page's repetition)"
    fr.warnings = list(result.warnings) + [
        f"p{p.index + 1}: {w}" for p in result.pages for w in p.warnings if w.startswith("MuPDF: ")]
    return fr


def maybe_finish_doc(ctx: RunContext, doc: Doc) -> None:
    """Write the document once all its wanted pages are done; report it."""
    if not doc.all_submitted or len(doc.done) < len(doc.wanted) or doc.result is None:
        return
    fr = _file_report(doc)
    # The document's last boundary: a format that cannot be rendered or written (OutputError from atomic_write,
    # a bug in one format) fails this document, with nothing half-written; the run goes on.
    try:
        enter("write", doc.src.path)
        if ctx.options.stdout:
            ctx.report.markdown[fr.source] = render_markdown(doc.result)
        else:
            fr.outputs = [str(p) for p in write_document(doc.result, doc.paths, ctx.options.formats)]
            if doc.partial is not None:
                doc.partial.remove()
    except (OutputError, OSError) as e:
        text = str(e) if isinstance(e, OutputError) else f"output not writable: {e.strerror or e}"
        fr.status, fr.reason, fr.output_error = "failed", text, True
    except InputError as e:  # pdf and html read the source again: it vanished or changed since it was read
        fr.status, fr.reason = "failed", f"outputs not all written: {e}"
    except Exception as e:
        if is_run_level(e):
            raise
        log.debug("writing %r failed", doc.src.path, exc_info=True)
        fr.status, fr.reason = "failed", f"outputs not written: {reason(e)}"
    if fr.status == "failed" and doc.partial is not None and is_up_to_date(doc.paths.json, doc.key):
        doc.partial.remove()  # the JSON (written first) holds every page: a rerun rebuilds the rest from it
    if doc.lock is not None:
        doc.lock.release()
        doc.lock = None
    for p in doc.result.pages:
        if p.error is None and p.mode and "generate" in p.timing:
            rates.add_page(ctx.rate_samples, p.mode, p.timing["generate"])
    ctx.report.files.append(fr)
    ctx.reporter.doc_done(fr)
