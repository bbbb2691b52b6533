"""The OCR engine `convert` and `infer` call: prepare requests on CPU, generate them on the scheduler."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from deepocr_cli import prompts
from deepocr_cli.engine import EngineMetrics, EngineRequest, FinishedSequence, Scheduler, kv_budget_bytes
from deepocr_cli.engine.ngram import NGramBlocker
from deepocr_cli.errors import OutOfResourcesError, UsageError
from deepocr_cli.model.image_processing import PreparedImage, prepare_image
from deepocr_cli.model.loading import DEFAULT_MODEL, LoadedCheckpoint, load_checkpoint
from deepocr_cli.modes import DEFAULT_MAX_TILES, DEFAULT_MIN_TILES, Mode

log = logging.getLogger(__name__)

IMAGE_PLACEHOLDER = "<image>"
#: Slots (sequences decoding at once) on CPU/MPS when none is given.
_DEFAULT_HOST_SLOTS = 8
#: Most slots the engine picks by itself on CUDA.
_MAX_AUTO_SLOTS = 256
#: Positions per page the automatic slot count plans for (prompt + a typical page of output).
_TYPICAL_PAGE_POSITIONS = 2048


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
    """

    image: PreparedImage
    prompt_ids: list[int]
    tag: object = None
    max_new_tokens: int | None = None


@dataclass
class GenerationResult:
    """What one request produced.

    Attributes:
        text: decoded output, special tokens kept, trailing EOS removed.
        token_ids: generated ids (EOS included when produced).
        prompt_ids: the prompt ids that were fed.
        num_image_embeddings: vision embeddings spliced in.
        generated_tokens: len(token_ids).
        truncated: the token limit was hit without EOS.
        first_top5: (id, logit) of the five best first tokens, before any logits processor.
        tag: the request's tag.
        preemptions: how often the scheduler paused and recomputed this request.
        error: why it could not run at all (too large for the KV budget), else None.
    """

    text: str
    token_ids: list[int]
    prompt_ids: list[int]
    num_image_embeddings: int
    generated_tokens: int
    truncated: bool
    first_top5: list[tuple[int, float]]
    tag: object = None
    preemptions: int = 0
    error: str | None = None


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
    """DeepSeek-OCR inference: ``prepare`` pages on CPU (thread-safe), ``generate`` them on the scheduler.

    Attributes:
        model_id: what was loaded (hub id or folder).
        revision: hub revision, if any.
        device: device of the weights.
        dtype: compute dtype.
        memory_budget_bytes: KV-cache budget (None: derived from free memory).
        metrics: scheduler counters summed over every generate() call.
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
        self.metrics = EngineMetrics()

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
        prepared = prepare_image(image, Mode(mode), min_tiles, max_tiles)
        return PreparedRequest(prepared, self.prompt_ids(prompt, prepared.num_embeddings), tag)

    # ----- scheduling -----

    def suggested_batch_size(self, max_new_tokens: int = 8192) -> int:
        """Slots (sequences decoding at once) to use when the user gives none.

        The paged KV cache holds what pages really use, so slots are planned for a typical page
        (``_TYPICAL_PAGE_POSITIONS`` positions), not the worst case; the scheduler preempts if the
        pages turn out longer.
        """
        if self.memory_budget_bytes is None and self.device.type != "cuda":
            return _DEFAULT_HOST_SLOTS
        budget = kv_budget_bytes(self.model, _MAX_AUTO_SLOTS, 8192, self.memory_budget_bytes)
        token_bytes = self.config.decoder.kv_bytes_per_token(torch.tensor([], dtype=self.dtype).element_size())
        positions = min(_TYPICAL_PAGE_POSITIONS, max_new_tokens + 1024)
        return max(1, min(_MAX_AUTO_SLOTS, budget // (token_bytes * positions)))

    def scheduler(
        self,
        slots: int | None = None,
        ngram: NGramConfig = NGramConfig(),
        ignore_eos: bool = False,
        static: bool = False,
        **options: Any,
    ) -> Scheduler:
        """A continuous-batching scheduler over this engine's model (see :class:`Scheduler`)."""
        blocker = None
        if ngram.enabled:
            blocker = NGramBlocker(ngram.size, ngram.window, (self.special.td_open, self.special.td_close))
        return Scheduler(
            self.model,
            image_token_id=self.special.image,
            eos_token_id=self.special.eos,
            slots=slots or self.suggested_batch_size(),
            ngram=blocker,
            ignore_eos=ignore_eos,
            static=static,
            **{"kv_budget": self.memory_budget_bytes, **options},
        )

    def engine_request(self, request: PreparedRequest, max_new_tokens: int) -> EngineRequest:
        """The scheduler's view of a prepared request (checks the placeholder count).

        Raises:
            UsageError: the prompt's `<image>` ids differ from the image's embedding count.
        """
        n_ph = sum(1 for t in request.prompt_ids if t == self.special.image)
        if n_ph != request.image.num_embeddings:
            raise UsageError(
                f"request has {n_ph} <image> ids but its image yields {request.image.num_embeddings}"
            )
        limit = request.max_new_tokens if request.max_new_tokens is not None else max_new_tokens
        return EngineRequest(list(request.prompt_ids), request.image, limit, request)

    def result(self, done: FinishedSequence) -> GenerationResult:
        """Decode a finished sequence into a :class:`GenerationResult`."""
        request: PreparedRequest = done.request.tag  # type: ignore[assignment]
        tokens = done.token_ids
        text_ids = tokens[:-1] if done.eos else tokens
        text = self.tokenizer.decode(text_ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return GenerationResult(
            text=text,
            token_ids=list(tokens),
            prompt_ids=list(request.prompt_ids),
            num_image_embeddings=request.image.num_embeddings,
            generated_tokens=len(tokens),
            truncated=done.truncated,
            first_top5=done.first_top5,
            tag=request.tag,
            preemptions=done.preemptions,
            error=done.error,
        )

    def generate(
        self,
        requests: Sequence[PreparedRequest],
        max_new_tokens: int = 8192,
        batch_size: int | None = None,
        ngram: NGramConfig = NGramConfig(),
        ignore_eos: bool = False,
        **options: Any,
    ) -> list[GenerationResult]:
        """Generate for every request on a fresh scheduler; results come back in request order.

        Args:
            requests: prepared requests, any mix of modes and prompts.
            max_new_tokens: output cap of requests without their own (also bounded by the context).
            batch_size: scheduler slots; None picks :meth:`suggested_batch_size`.
            ngram: the no-repeat n-gram rule.
            ignore_eos: keep generating past EOS (fixed-length benchmarks).
            options: passed to :class:`Scheduler` (kv_budget, block_size, prefill_tokens, static, ...).

        Raises:
            OutOfResourcesError: a request does not fit the KV budget even alone.
        """
        if not requests:
            return []
        if batch_size is not None and batch_size < 1:
            raise UsageError(f"batch size must be >= 1, got {batch_size}")
        work = [self.engine_request(r, max_new_tokens) for r in requests]
        sched = self.scheduler(batch_size or self.suggested_batch_size(max_new_tokens), ngram, ignore_eos, **options)
        results = [self.result(f) for f in sched.run(work)]
        self.metrics.merge(sched.metrics)
        failed = [r.error for r in results if r.error]
        if failed:
            raise OutOfResourcesError(
                f"out of memory: a page {failed[0]}; lower --max-new-tokens, use a smaller mode, "
                "or free GPU memory"
            )
        return results


def load_engine(
    model: str = DEFAULT_MODEL,
    revision: str | None = None,
    device: str = "auto",
    dtype: str | torch.dtype | None = None,
    attn: str = "auto",
    memory_budget_bytes: int | None = None,
) -> OcrEngine:
    """Load a checkpoint (folder or hub id) and wrap it in an :class:`OcrEngine`.

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
