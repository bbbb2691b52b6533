"""Where a document's outputs go: next to its source, or mirrored under --output-dir."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class OutputPaths:
    """Where one document's outputs go: ``paper.md``, ``paper.json`` and ``paper_images/``."""

    markdown: Path
    json: Path
    images_dir: Path

    @property
    def stem(self) -> str:
        """The name every output of the document starts with (``paper`` for ``paper.json``)."""
        return self.json.name[: -len(".json")]

    def with_suffix(self, suffix: str) -> Path:
        """The output with this suffix beside the others (``.ocr.pdf`` -> ``paper.ocr.pdf``)."""
        return self.json.with_name(self.stem + suffix)


def output_paths(source: Path, root: Path, output_dir: Path | None, stem: str | None = None) -> OutputPaths:
    """Choose output locations for a source document.

    Args:
        source: the input file.
        root: the input root the user named (a folder, or the file itself).
        output_dir: when given, outputs mirror ``source``'s path relative to ``root`` under it;
            otherwise they go next to the source.
        stem: output name stem; default the source's stem (the pipeline passes the full name,
            e.g. ``a.pdf``, when two sources would otherwise share outputs).

    Returns:
        The three output paths.

    Raises:
        ValueError: when ``output_dir`` is given and ``source`` is not inside ``root``.
    """
    if output_dir is None:
        base = source.parent
    elif source == root:
        base = output_dir
    else:
        try:
            rel = source.relative_to(root)
        except ValueError:
            raise ValueError(f"{source} is not under the input root {root}") from None
        base = output_dir / rel.parent
    stem = stem or source.stem
    return OutputPaths(base / f"{stem}.md", base / f"{stem}.json", base / f"{stem}_images")
