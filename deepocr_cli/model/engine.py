"""The OCR engine the converter calls: prepare requests on CPU, generate in batches with OOM back-off."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from deepocr_cli import prompts
from deepocr_cli.errors import OutOfResourcesError, UsageError
from deepocr_cli.model.generation import GenerationOutput, NGramBlocker, generate_batch
from deepocr_cli.model.image_processing import PreparedImage, prepare_image
from deepocr_cli.model.loading import DEFAULT_MODEL, LoadedCheckpoint, load_checkpoint
from deepocr_cli.planning.modes import DEFAULT_MAX_TILES, DEFAULT_MIN_TILES, Mode

log = logging.getLogger(__name__)

IMAGE_PLACEHOLDER = "<image>"
#: Activation bytes per prompt position on top of the KV cache (hidden states, MLP, logits slack).
_ACTIVATION_FACTOR = 1.0
#: Fraction of free GPU memory auto_batch_size may plan to use.
_GPU_MEMORY_FRACTION = 0.8
#: Batch size on CPU/MPS when no budget is given.
_DEFAULT_HOST_BATCH = 8


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
    """

    image: PreparedImage
    prompt_ids: list[int]
    tag: object = None


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
    """

    text: str
    token_ids: list[int]
    prompt_ids: list[int]
    num_image_embeddings: int
    generated_tokens: int
    truncated: bool
    first_top5: list[tuple[int, float]]
    tag: object = None


@dataclass
class EngineStats:
    """Counters for the converter's report and for tests (batch sizes actually run, OOM splits)."""

    batches: list[int] = field(default_factory=list)
    oom_splits: int = 0
    encode_s: float = 0.0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    generated_tokens: int = 0


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


class _BudgetExceeded(torch.cuda.OutOfMemoryError):
    """Raised before running a batch whose estimate exceeds ``memory_budget_bytes`` (a simulated OOM)."""


class OcrEngine:
    """DeepSeek-OCR inference: ``prepare`` pages on CPU (thread-safe), ``generate`` them in batches.

    Attributes:
        model_id: what was loaded (hub id or folder).
        revision: hub revision, if any.
        device: device of the weights.
        dtype: compute dtype.
        stats: counters of what ``generate`` ran.
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
        self.stats = EngineStats()

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

    # ----- memory planning -----

    def request_bytes(self, request: PreparedRequest, max_new_tokens: int) -> int:
        """Estimated device bytes one request needs: KV for prompt + output, plus activations."""
        return self._bytes_for(len(request.prompt_ids), max_new_tokens)

    def _bytes_for(self, prompt_len: int, max_new_tokens: int) -> int:
        dec = self.config.decoder
        element = torch.tensor([], dtype=self.dtype).element_size()
        positions = min(prompt_len + max_new_tokens, dec.max_position_embeddings)
        kv = dec.kv_bytes_per_token(element) * positions
        activations = prompt_len * dec.hidden_size * element * (4 + dec.num_experts_per_tok)
        return int(kv + _ACTIVATION_FACTOR * activations)

    def _memory_budget(self) -> int | None:
        """Bytes a batch may use: the configured budget, else 80% of free GPU memory; None off CUDA."""
        if self.memory_budget_bytes is not None:
            return self.memory_budget_bytes
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            return int(free * _GPU_MEMORY_FRACTION)
        return None

    def auto_batch_size(self, requests: Sequence[PreparedRequest], max_new_tokens: int = 8192) -> int:
        """Largest batch the memory allows: the budget if set, else 80% of free GPU memory.

        KV per token = layers * 2 * heads * head_dim * bytes (60 KiB for the released model in bf16).
        """
        if not requests:
            return 1
        budget = self._memory_budget()
        if budget is None:
            return max(1, min(len(requests), _DEFAULT_HOST_BATCH))
        per_request = max(self.request_bytes(r, max_new_tokens) for r in requests)
        return max(1, min(len(requests), budget // max(per_request, 1)))

    def suggested_batch_size(self, max_new_tokens: int = 8192) -> int:
        """How many pages a caller should collect before calling generate().

        Sized for the costliest page (Gundam with the most tiles, plus prompt text), so any mix of
        modes fits; generate() still splits a batch if the real requests need more memory.
        """
        from deepocr_cli.planning.modes import MAX_ALLOWED_TILES, image_embeddings

        budget = self._memory_budget()
        if budget is None:
            return _DEFAULT_HOST_BATCH
        worst = image_embeddings(Mode.GUNDAM, (3, MAX_ALLOWED_TILES // 3)) + 32
        return max(1, budget // max(self._bytes_for(worst, max_new_tokens), 1))

    # ----- generation -----

    def generate(
        self,
        requests: Sequence[PreparedRequest],
        max_new_tokens: int = 8192,
        batch_size: int | None = None,
        ngram: NGramConfig = NGramConfig(),
        ignore_eos: bool = False,
    ) -> list[GenerationResult]:
        """Generate for every request; results come back in request order.

        Args:
            requests: prepared requests, any mix of modes and prompts.
            max_new_tokens: per-request output cap (also bounded by the context length).
            batch_size: requests per batch; None picks :meth:`auto_batch_size`.
            ngram: the no-repeat n-gram rule.
            ignore_eos: keep generating past EOS (fixed-length benchmarks).

        Raises:
            OutOfResourcesError: out of memory even with a single request.
        """
        if not requests:
            return []
        size = batch_size or self.auto_batch_size(requests, max_new_tokens)
        if size < 1:
            raise UsageError(f"batch size must be >= 1, got {size}")
        blocker = None
        if ngram.enabled:
            whitelist = (self.special.td_open, self.special.td_close)
            blocker = NGramBlocker(ngram.size, ngram.window, whitelist)
        # Neighbouring prompt lengths waste less padding: batch by length, answer in request order.
        order = sorted(range(len(requests)), key=lambda i: len(requests[i].prompt_ids))
        results: list[GenerationResult | None] = [None] * len(requests)
        for start in range(0, len(order), size):
            chunk = order[start : start + size]
            for i, res in zip(
                chunk,
                self._run_with_backoff([requests[i] for i in chunk], max_new_tokens, blocker, ignore_eos),
                strict=True,
            ):
                results[i] = res
        return [r for r in results if r is not None]

    def _run_with_backoff(
        self,
        batch: list[PreparedRequest],
        max_new_tokens: int,
        blocker: NGramBlocker | None,
        ignore_eos: bool,
    ) -> list[GenerationResult]:
        """Run a batch; on (real or budget-simulated) OOM split it in halves, down to one request."""
        try:
            return self._run(batch, max_new_tokens, blocker, ignore_eos)
        except torch.cuda.OutOfMemoryError as exc:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(batch) == 1:
                raise OutOfResourcesError(
                    "out of memory with a single page; lower --max-new-tokens, use a smaller mode, "
                    "or free GPU memory"
                ) from exc
            self.stats.oom_splits += 1
            half = len(batch) // 2
            log.warning(
                "out of memory with a batch of %d; retrying as %d + %d", len(batch), half, len(batch) - half
            )
            first = self._run_with_backoff(batch[:half], max_new_tokens, blocker, ignore_eos)
            return first + self._run_with_backoff(batch[half:], max_new_tokens, blocker, ignore_eos)

    def _run(
        self,
        batch: list[PreparedRequest],
        max_new_tokens: int,
        blocker: NGramBlocker | None,
        ignore_eos: bool,
    ) -> list[GenerationResult]:
        if self.memory_budget_bytes is not None:
            need = sum(self.request_bytes(r, max_new_tokens) for r in batch)
            if need > self.memory_budget_bytes:
                raise _BudgetExceeded(f"batch needs ~{need} bytes, budget is {self.memory_budget_bytes}")
        for r in batch:
            n_ph = sum(1 for t in r.prompt_ids if t == self.special.image)
            if n_ph != r.image.num_embeddings:
                raise UsageError(
                    f"request has {n_ph} <image> ids but its image yields {r.image.num_embeddings}"
                )
        with torch.inference_mode():
            t0 = time.perf_counter()
            image_embeds = self.model.encode_images([r.image for r in batch])
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.stats.encode_s += time.perf_counter() - t0
            out: GenerationOutput = generate_batch(
                self.model,
                [r.prompt_ids for r in batch],
                image_embeds,
                image_token_id=self.special.image,
                eos_token_id=self.special.eos,
                pad_token_id=self.special.pad,
                max_new_tokens=max_new_tokens,
                ngram=blocker,
                ignore_eos=ignore_eos,
            )
        self.stats.batches.append(len(batch))
        self.stats.prefill_s += out.prefill_s
        self.stats.decode_s += out.decode_s
        results = []
        for r, tokens, truncated, top5 in zip(batch, out.tokens, out.truncated, out.first_top5, strict=True):
            self.stats.generated_tokens += len(tokens)
            text_ids = tokens[:-1] if tokens and tokens[-1] == self.special.eos and not truncated else tokens
            text = self.tokenizer.decode(
                text_ids, skip_special_tokens=False, clean_up_tokenization_spaces=False
            )
            results.append(
                GenerationResult(
                    text=text,
                    token_ids=list(tokens),
                    prompt_ids=list(r.prompt_ids),
                    num_image_embeddings=r.image.num_embeddings,
                    generated_tokens=len(tokens),
                    truncated=truncated,
                    first_top5=top5,
                    tag=r.tag,
                )
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
        memory_budget_bytes: plan batches within this many bytes (estimated KV + activations per
            request); a batch over it is split as if it had run out of memory.

    Raises:
        ModelError: weights unavailable or device missing.
        CheckpointError: the checkpoint does not match the architecture.
    """
    ckpt = load_checkpoint(model, revision=revision, device=device, dtype=dtype, attn=attn)
    return OcrEngine(ckpt, str(model), revision, memory_budget_bytes)
