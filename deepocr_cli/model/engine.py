"""The model side of the OCR engine: load a checkpoint, turn an image and a prompt into a request (CPU only).

Generation (the continuous-batching scheduler) is :mod:`deepocr_cli.engine`, which wraps this class.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from deepocr_cli import prompts
from deepocr_cli.errors import UsageError
from deepocr_cli.model.image_processing import PreparedImage, pinned
from deepocr_cli.model.loading import DEFAULT_MODEL, LoadedCheckpoint, family_of_config, load_checkpoint
from deepocr_cli.planning.modes import DEFAULT_MAX_TILES, DEFAULT_MIN_TILES, Mode

log = logging.getLogger(__name__)

IMAGE_PLACEHOLDER = "<image>"


@dataclass(frozen=True)
class NGramConfig:
    """The windowed no-repeat n-gram rule (official PDF runner: n=20, window=50)."""

    size: int = 20
    window: int = 50
    enabled: bool = True


@dataclass
class PreparedRequest:
    """One image plus its prompt ids, ready for :meth:`OcrEngine.generate`.

    Attributes:
        image: encoder inputs.
        prompt_ids: full prompt ids with ``image.num_embeddings`` `<image>` placeholders.
        tag: caller's handle, returned untouched in the result.
        max_new_tokens: this request's own output cap (None: the one given to generate()).
        ngram_window: this request's no-repeat n-gram window (None: the run's).
    """

    image: PreparedImage
    prompt_ids: list[int]
    tag: object = None
    max_new_tokens: int | None = None
    ngram_window: int | None = None


def split_prompt(prompt: str) -> tuple[str, str]:
    """Strip the prompt (the official `plain` template does) and split it at its one `<image>`.

    Raises:
        UsageError: the prompt has no or several `<image>` markers.
    """
    text = prompt.strip()
    if text.count(IMAGE_PLACEHOLDER) != 1:
        raise UsageError(f"a prompt needs exactly one {IMAGE_PLACEHOLDER} marker: {prompt!r}")
    before, after = text.split(IMAGE_PLACEHOLDER)
    return before, after


def build_prompt_ids(
    tokenizer: Any, prompt: str, num_image_embeddings: int, bos_id: int, image_id: int
) -> list[int]:
    """[BOS] + ids(text before `<image>`) + [image_id] * N + ids(text after) (facts §4.1, §12)."""
    before, after = split_prompt(prompt)
    ids_before = tokenizer.encode(before, add_special_tokens=False) if before else []
    ids_after = tokenizer.encode(after, add_special_tokens=False) if after else []
    return [bos_id, *ids_before, *([image_id] * num_image_embeddings), *ids_after]


class OcrEngine:
    """DeepSeek-OCR on the model side: ``prepare`` pages on CPU (thread-safe) into :class:`PreparedRequest`.

    Attributes:
        model_id: what was loaded (hub id or folder).
        revision: hub revision, if any.
        device: device of the weights.
        dtype: compute dtype.
        memory_budget_bytes: KV-cache budget for the generation engine (None: from free memory).
        pin_memory: prepared pixels go to page-locked host memory (on CUDA: copied with ``non_blocking``).
    """

    def __init__(
        self,
        checkpoint: LoadedCheckpoint,
        model_id: str,
        revision: str | None = None,
        memory_budget_bytes: int | None = None,
    ) -> None:
        self._ckpt = checkpoint
        self.model = checkpoint.model
        self.tokenizer = checkpoint.tokenizer
        self.config = checkpoint.config
        self.special = checkpoint.special
        self.model_id = model_id
        self.revision = revision
        self.device = checkpoint.device
        self.dtype = checkpoint.dtype
        self.memory_budget_bytes = memory_budget_bytes
        #: page geometry and token counts of the loaded model (DeepSeek-OCR or DeepSeek-OCR-2)
        self.family = family_of_config(checkpoint.config)
        self.pin_memory = self.device.type == "cuda"

    # ----- preparation (CPU only) -----

    def prompt_ids(self, prompt: str, num_image_embeddings: int) -> list[int]:
        """Prompt ids for a given placeholder count (see :func:`build_prompt_ids`)."""
        return build_prompt_ids(
            self.tokenizer, prompt, num_image_embeddings, self.special.bos, self.special.image
        )

    def prepare(
        self,
        image: Image.Image,
        mode: Mode,
        prompt: str = prompts.MARKDOWN,
        min_tiles: int = DEFAULT_MIN_TILES,
        max_tiles: int = DEFAULT_MAX_TILES,
        tag: object = None,
    ) -> PreparedRequest:
        """Preprocess one image and build its prompt ids (CPU only; safe to call from worker threads)."""
        prepared = self.model.prepare_image(image, Mode(mode), min_tiles, max_tiles)  # per model family
        if self.pin_memory:
            prepared = pinned(prepared)
        return PreparedRequest(prepared, self.prompt_ids(prompt, prepared.num_embeddings), tag)


def load_engine(
    model: str = DEFAULT_MODEL,
    revision: str | None = None,
    device: str = "auto",
    dtype: str | torch.dtype | None = None,
    attn: str = "auto",
    memory_budget_bytes: int | None = None,
) -> OcrEngine:
    """Load a checkpoint (folder or hub id) and wrap it in an :class:`OcrEngine` (no generation).

    ``deepocr_cli.engine.load_engine`` takes the same arguments and adds the scheduler.

    Args:
        model: local folder in the official layout or hub id.
        revision: hub revision.
        device: "auto" (cuda > mps > cpu) or a torch device string.
        dtype: compute dtype (default bf16 on CUDA, fp32 elsewhere).
        attn: attention backend ("auto"/"sdpa").
        memory_budget_bytes: KV-cache budget in bytes (None: from free memory); when it runs out
            the scheduler preempts and later recomputes sequences.

    Raises:
        ModelError: weights unavailable or device missing.
        CheckpointError: the checkpoint does not match the architecture.
    """
    ckpt = load_checkpoint(model, revision=revision, device=device, dtype=dtype, attn=attn)
    return OcrEngine(ckpt, str(model), revision, memory_budget_bytes)
