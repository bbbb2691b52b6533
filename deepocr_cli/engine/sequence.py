"""What the scheduler queues and returns: a request, a sequence in flight, a finished sequence."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class EngineRequest:
    """One generation request.

    Attributes:
        prompt_ids: prompt ids with one `<image>` id per vision embedding.
        image: the model's prepared image (passed to ``encode_images``), or None for text only.
        max_new_tokens: output cap (also bounded by the context length).
        tag: caller's handle, returned untouched.
        ngram_window: this request's no-repeat window (None: the scheduler's rule's own); at most that rule's.
    """

    prompt_ids: list[int]
    image: Any = None
    max_new_tokens: int = 8192
    tag: object = None
    ngram_window: int | None = None


@dataclass
class FinishedSequence:
    """A finished request.

    Attributes:
        index: arrival number (order of :meth:`Scheduler.add` calls).
        request: the request.
        token_ids: generated ids (EOS included when produced).
        eos: stopped on EOS.
        first_top5: (id, raw logit) of the five best first tokens.
        preemptions: how often this sequence was paused and recomputed.
        seconds: its share of the engine's time (each step's time split over the sequences it ran).
        error: why it could not run (KV budget too small for it alone), else None.
    """

    index: int
    request: EngineRequest
    token_ids: list[int]
    eos: bool
    first_top5: list[tuple[int, float]]
    preemptions: int = 0
    seconds: float = 0.0
    error: str | None = None

    @property
    def truncated(self) -> bool:
        """Stopped without EOS (token or context limit, or an error)."""
        return not self.eos


@dataclass
class Sequence:
    """A request in flight: its generated tokens, its slot and how much of it the KV cache holds."""

    index: int
    request: EngineRequest
    limit: int
    generated: list[int] = field(default_factory=list)
    slot: int = -1
    cached: int = 0  # positions whose K/V are in the cache
    embeds: torch.Tensor | None = None  # [context, H] inputs of the pending prefill
    first_top5: list[tuple[int, float]] | None = None
    admitted: int = -1  # admission counter: the largest is the newest
    preemptions: int = 0
    seconds: float = 0.0

    @property
    def context(self) -> int:
        """Positions the cache must hold before the next token can be chosen from a prefill."""
        return len(self.request.prompt_ids) + len(self.generated)

    @property
    def decoding(self) -> bool:
        return bool(self.generated) and self.cached == self.context - 1
