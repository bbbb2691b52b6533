"""What a checkpoint is, independent of how `--model` spells it (torch-free, so up-to-date checks and `plan`
never import the model code).

A local folder is identified by a fingerprint of its config.json and weight files; a hub id by its repo id and
the commit its cached snapshot resolves to (and the same fingerprint, so the hub id and its snapshot folder are
the same model). The fingerprint goes into every up-to-date key and keys the measured-rates file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepocr_cli.errors import CheckpointError, ModelError

#: Files a snapshot needs (the remote code and images are never fetched).
ALLOW_PATTERNS = ["*.json", "*.safetensors", "tokenizer*"]


def weight_files(folder: Path) -> list[Path]:
    """The checkpoint's safetensors files (from its index when sharded).

    Raises:
        CheckpointError: no weights, a bad index, or a shard the index lists is missing.
    """
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text("utf-8"))["weight_map"]
        except (OSError, ValueError, KeyError) as exc:
            raise CheckpointError(f"bad {index.name}: {exc}") from exc
        files = sorted({folder / f for f in weight_map.values()})
    else:
        files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"no *.safetensors weights in {folder}")
    for f in files:
        if not f.is_file():
            raise CheckpointError(f"checkpoint shard {f.name} listed in the index is missing from {folder}")
    return files
#: Bytes read from the start and from the end of every tensor for the fingerprint.
_TENSOR_SAMPLE = 4096


def _hub_snapshot(folder: Path) -> tuple[str, str] | None:
    """(repo id, commit) when ``folder`` is a Hugging Face cache snapshot (``models--org--name/snapshots/SHA``)."""
    if folder.parent.name != "snapshots" or not folder.parent.parent.name.startswith("models--"):
        return None
    repo = folder.parent.parent.name[len("models--"):].replace("--", "/")
    return repo, folder.name


def _weight_digest(path: Path, h: Any) -> None:
    """Feed a weight file's name, size, safetensors header and a sample of every tensor to ``h``.

    The header pins every tensor's name, dtype, shape and offset; the first and last 4 KiB of each tensor catch
    retrained weights of the same shapes, even when training touched only some layers (every element of a trained
    matrix moves). That is a few MB of a multi-GB checkpoint, read in tensor order.
    """
    size = path.stat().st_size
    h.update(f"{path.name}\0{size}\0".encode())
    with path.open("rb") as f:
        header_len = int.from_bytes(f.read(8), "little") if size >= 8 else 0
        header = f.read(min(header_len, size))
        h.update(header)
        try:
            spans = sorted(tuple(v["data_offsets"]) for k, v in json.loads(header).items() if k != "__metadata__")
        except (ValueError, TypeError, KeyError, AttributeError):
            spans = [(0, size - 8 - len(header))]  # not a readable header: sample the file as one span
        base = 8 + len(header)
        for begin, end in spans:
            for start in sorted({begin, max(begin, end - _TENSOR_SAMPLE)}):
                f.seek(base + start)
                h.update(f.read(min(_TENSOR_SAMPLE, end - start)))


def fingerprint_folder(folder: Path) -> str:
    """Content fingerprint of a checkpoint folder: config.json and every weight file (names, sizes, headers,
    a sample of every tensor). The same files give the same fingerprint wherever they live and however the path is spelled.

    Raises:
        ModelError: the folder has no config.json or no weights.
    """
    h = hashlib.sha256()
    try:
        h.update((folder / "config.json").read_bytes())
        for f in weight_files(folder):
            _weight_digest(f, h)
    except OSError as e:
        raise ModelError(f"cannot read checkpoint {folder}: {e.strerror or e}") from e
    return h.hexdigest()[:32]


@dataclass(frozen=True)
class CheckpointIdentity:
    """What a checkpoint is, independent of how `--model` spelled it.

    Attributes:
        given: the ``--model`` string as typed.
        path: the resolved local folder (symlinks and relative spellings resolved).
        fingerprint: `fingerprint_folder` of that folder.
        repo: hub repo id, when the folder is a hub snapshot (given as id or as its cache folder).
        commit: the snapshot's commit.
    """

    given: str
    path: str
    fingerprint: str
    repo: str | None = None
    commit: str | None = None

    @property
    def key(self) -> str:
        """The identity used in up-to-date keys and the measured-rates file: the content fingerprint."""
        return self.fingerprint

    def to_json(self) -> dict[str, Any]:
        """The ``model`` record of the JSON output (``id`` is the hub repo id when known, else the folder)."""
        return {"id": self.repo or self.path, "path": self.path, "fingerprint": self.fingerprint,
                "repo": self.repo, "commit": self.commit, "given": self.given}


def checkpoint_identity(model: str | Path, revision: str | None = None, download: bool = True) -> CheckpointIdentity:
    """Identify a checkpoint without loading it.

    Args:
        model: a local folder (any spelling) or a hub id.
        revision: hub revision.
        download: for a hub id, fetch the snapshot when it is not cached (convert needs it anyway); with
            False only the local cache is consulted (``plan`` never downloads weights).

    Raises:
        ModelError: the checkpoint cannot be found or read.
    """
    local = Path(model).expanduser()
    if local.is_dir():
        folder = local.resolve()
    elif download:
        from deepocr_cli.model.loading import resolve_model_dir

        folder = resolve_model_dir(model, revision).resolve()
    else:
        from huggingface_hub import snapshot_download

        try:
            folder = Path(snapshot_download(repo_id=str(model), revision=revision, allow_patterns=ALLOW_PATTERNS,
                                            local_files_only=True)).resolve()
        except Exception as exc:  # not cached: no identity without the network
            raise ModelError(f"model {model!r} is not in the local cache") from exc
    hub = _hub_snapshot(folder)
    if hub is None and not local.is_dir():
        hub = (str(model), folder.name)
    return CheckpointIdentity(str(model), str(folder), fingerprint_folder(folder), *(hub or (None, None)))
