"""The last stages of a run: a finished page (crops saved, progress checkpointed) and a finished document
(status decided, outputs written atomically, lock released, outcome reported)."""

from __future__ import annotations

import logging

from deepocr_cli.errors import InputError
from deepocr_cli.outputs.crops import render_molecule_images, save_page_crops
from deepocr_cli.outputs.formats import write_document
from deepocr_cli.outputs.markdown import render_markdown
from deepocr_cli.planning import rates
from deepocr_cli.run.jobs import Doc, Page, RunContext
from deepocr_cli.run.report import FileReport

log = logging.getLogger(__name__)


def finish_page(ctx: RunContext, work: Page) -> None:
    """A page has its text (and figure answers): save its crops, record it durably, finish its document."""
    doc, page = work.doc, work.page
    if work.image is not None and not ctx.options.stdout:
        try:
            save_page_crops(page, work.image, doc.paths)
            if ctx.options.render_molecules:
                render_molecule_images(page, doc.paths)
        except OSError as e:
            page.warnings.append(f"figure crops not saved: {e.strerror or e}")
    work.image = None
    doc.done[page.index] = page
    if doc.partial is not None:
        try:
            doc.partial.append(page)
        except OSError as e:
            log.warning("cannot record progress of %s: %s", doc.src.path, e)
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
    return fr


def maybe_finish_doc(ctx: RunContext, doc: Doc) -> None:
    """Write the document once all its wanted pages are done; report it."""
    if not doc.all_submitted or len(doc.done) < len(doc.wanted) or doc.result is None:
        return
    fr = _file_report(doc)
    try:
        if ctx.options.stdout:
            ctx.report.markdown[fr.source] = render_markdown(doc.result)
        else:
            fr.outputs = [str(p) for p in write_document(doc.result, doc.paths, ctx.options.formats)]
            if doc.partial is not None:
                doc.partial.remove()
    except OSError as e:
        fr.status, fr.reason, fr.output_error = "failed", f"output not writable: {e.strerror or e}", True
    except InputError as e:  # pdf and html read the source again: it vanished or changed since it was read
        fr.status, fr.reason = "failed", f"outputs not all written: {e}"
    if doc.lock is not None:
        doc.lock.release()
        doc.lock = None
    for p in doc.result.pages:
        if p.error is None and p.mode and "generate" in p.timing:
            rates.add_page(ctx.rate_samples, p.mode, p.timing["generate"])
    ctx.report.files.append(fr)
    ctx.reporter.doc_done(fr)
