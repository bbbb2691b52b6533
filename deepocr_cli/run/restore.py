"""Restore a converted document's missing outputs from its JSON, without the model.

A document whose JSON is current (same source, model and settings) but whose Markdown (or another format, or a
figure crop) was deleted or edited gets it back from the JSON: the JSON holds every page's blocks, links and
figure answers, so the rewritten files are the ones the conversion wrote.
"""

from __future__ import annotations

import logging

from deepocr_cli.boundary import is_run_level
from deepocr_cli.boundary import reason as reason_for
from deepocr_cli.errors import InputError, OutputError
from deepocr_cli.inputs.render import open_document
from deepocr_cli.outputs.crops import save_page_crops
from deepocr_cli.outputs.formats import write_document
from deepocr_cli.outputs.results import DocResult
from deepocr_cli.outputs.stored import load_stored
from deepocr_cli.run.finish import truncation_note
from deepocr_cli.run.jobs import Doc
from deepocr_cli.run.report import FileReport
from deepocr_cli.run.state import DocumentLock, Verdict, write_state

log = logging.getLogger(__name__)


def _restore_crops(doc: Doc, result: DocResult, missing: list[str]) -> None:
    """Render again the pages whose crops are missing, at the size the model saw, and save their crops."""
    folder = doc.paths.json.parent
    wanted = set(missing)
    pages = [p for p in result.pages if any(link in wanted for b in p.blocks for link in b.image_paths)]
    with open_document(doc.src, password=result.password) as reader:
        for page in pages:
            image = reader.render(page.index, None if reader.kind != "pdf" else (page.width, page.height))
            save_page_crops(page, image, doc.paths)
    still = [m for m in missing if not (folder / m).is_file()]
    if still:
        raise OSError(f"figure crops not restored: {', '.join(still[:3])}")


def restore_outputs(doc: Doc, verdict: Verdict, password: str | None = None) -> FileReport:
    """Write the formats and crops a `Verdict` of ``rewrite`` names from the document's JSON.

    ``password`` opens an encrypted source again (crops, and formats that reopen it); it is never written.

    Returns:
        ``restored`` (``partial`` when the document keeps truncated pages), ``busy`` when another run holds
        the document, or ``failed`` when the JSON or the source cannot be read or the outputs written.
    """
    src = str(doc.src.path)
    lock = DocumentLock(doc.src.path)
    try:
        if not lock.acquire():
            return FileReport(src, "busy", "being converted by another deepocr process")
    except OSError as e:
        return FileReport(src, "failed", f"unreadable: {e.strerror or e}")
    try:
        result = load_stored(doc.paths.json, doc.src.path)
        result.password = password
        if verdict.crops:
            _restore_crops(doc, result, verdict.crops)
        written = write_document(result, doc.paths, verdict.formats)
        write_state(doc.paths, doc.key, result, verdict.formats, previous=verdict.record)
    except (KeyError, TypeError, ValueError, InputError) as e:
        return FileReport(src, "failed", f"cannot restore outputs from {doc.paths.json.name}: {e}")
    except OutputError as e:
        return FileReport(src, "failed", str(e), output_error=True)
    except OSError as e:
        return FileReport(src, "failed", f"cannot restore outputs: {e.strerror or e}")
    except Exception as e:  # the document's boundary (boundary.py): a format that breaks fails only this file
        if is_run_level(e):
            raise
        return FileReport(src, "failed", f"cannot restore outputs: {reason_for(e)}")
    finally:
        lock.release()
    truncated = [p.index for p in result.pages if p.truncated]
    reason = verdict.reason + (f"; {truncation_note(truncated, truncated)}" if truncated else "")
    log.debug("restored %s", ", ".join(str(p) for p in written))
    return FileReport(src, "partial" if truncated else "restored", reason, outputs=[str(p) for p in written],
                      truncated_pages=len(truncated), truncated_kept=len(truncated))
