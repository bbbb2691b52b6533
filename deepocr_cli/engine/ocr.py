"""The OCR engine `convert` and `infer` use: a model-side engine (``prepare``) plus the scheduler (``generate``).

:class:`Engine` wraps whatever the model package's ``load_engine`` returns (an object with ``prepare``,
``model``, ``tokenizer``, ``special``, ``config``, ``device``, ``dtype``, ``memory_budget_bytes``) and
generates on the continuous-batching :class:`~deepocr_cli.engine.scheduler.Scheduler`, so another
checkpoint family plugs in by providing those.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from deepocr_cli.engine.metrics import EngineMetrics
from deepocr_cli.engine.ngram import NGramBlocker
from deepocr_cli.engine.scheduler import EngineRequest, FinishedSequence, Scheduler, kv_budget_bytes
from deepocr_cli.errors import OutOfResourcesError, UsageError
from deepocr_cli.model.engine import NGramConfig, PreparedRequest

log = logging.getLogger(__name__)

#: Slots (sequences decoding at once) on CPU/MPS when none is given.
_DEFAULT_HOST_SLOTS = 8
#: Most slots the engine picks by itself on CUDA.
_MAX_AUTO_SLOTS = 256
#: Positions per page the automatic slot count plans for (prompt + a typical page of output).
_TYPICAL_PAGE_POSITIONS = 2048


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
        seconds: this request's share of the engine's time.
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
    seconds: float = 0.0
    error: str | None = None


class Engine:
    """Preparation from the model-side engine, generation on the scheduler.

    Attributes of the wrapped engine (``prepare``, ``model``, ``tokenizer``, ``special``, ``config``,
    ``device``, ``dtype``, ``model_id``, ``revision``, ``memory_budget_bytes``) read through.

    Attributes:
        base: the model-side engine.
        metrics: scheduler counters summed over every generate() call.
        options: scheduler options every scheduler of this engine gets (cuda_graphs, overlap,
            prefill_attention, ...); a call's own options override them.
    """

    def __init__(self, base: Any, **options: Any) -> None:
        self.base = base
        self.metrics = EngineMetrics()
        self.options = options

    def __getattr__(self, name: str) -> Any:
        if name == "base":  # not set yet (copy/pickle): no recursion
            raise AttributeError(name)
        return getattr(self.base, name)

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
            **{"kv_budget": self.memory_budget_bytes, **self.options, **options},
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
        return EngineRequest(list(request.prompt_ids), request.image, limit, request, request.ngram_window)

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
            seconds=done.seconds,
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


def load_engine(*args: Any, cuda_graphs: bool = False, overlap: bool = False, prefill_attention: str = "auto",
                **kwargs: Any) -> Engine:
    """Load a checkpoint with :func:`deepocr_cli.model.engine.load_engine` (same arguments) and add generation.

    Args:
        cuda_graphs: decode from CUDA graphs (``--cuda-graphs``; eager with a warning off CUDA).
        overlap: encode new pages on a side CUDA stream while the running batch decodes.
        prefill_attention: "auto" (flash_attn varlen when importable on CUDA, else SDPA), "sdpa",
            "flex" or "varlen" (see :class:`Scheduler`).
    """
    from deepocr_cli.model.engine import load_engine as load_model_engine

    return Engine(load_model_engine(*args, **kwargs), cuda_graphs=cuda_graphs, overlap=overlap,
                  prefill_attention=prefill_attention)
