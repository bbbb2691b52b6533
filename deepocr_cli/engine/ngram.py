"""The windowed no-repeat n-gram rule applied to a batch of sequences before the greedy choice."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NGramBlocker:
    """The official windowed no-repeat rule over *generated* ids (facts §4.4).

    With t generated tokens and t >= size: every n-gram starting at s in [max(0, t - window), t - size]
    whose first size-1 tokens equal the last size-1 generated tokens bans its last token, unless that
    token is whitelisted.

    Attributes:
        size: n-gram length n.
        window: how far back n-grams may start.
        whitelist: ids never banned (the `<td>`/`</td>` table tokens upstream).
    """

    size: int = 20
    window: int = 50
    whitelist: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.size < 1 or self.window < 1:
            raise ValueError(f"n-gram size and window must be >= 1, got {self.size}, {self.window}")

    @property
    def history(self) -> int:
        """How many trailing generated tokens the rule reads."""
        return self.window + self.size

    def banned(
        self,
        generated: torch.Tensor,
        vocab_size: int,
        lengths: torch.Tensor | None = None,
        windows: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """Banned-token mask for the next step.

        Args:
            generated: [B, t] generated ids so far, or only their last ``window + size`` (the
                window is measured back from the newest token, so the result is the same).
                With ``lengths``, rows are right-aligned (newest token last) and only the last
                ``lengths[i]`` entries of row i are real; the rest may hold any valid id.
            vocab_size: width of the returned mask.
            lengths: [B] generated tokens per row, for rows of different ages in one batch.
            windows: [B] each row's own window (at most ``window``), for requests whose runner blocks over a
                shorter window than the widest in the batch (OCR-2: 90 for images, 50 for PDF pages).

        Returns:
            bool [B, vocab_size] (True = banned), or None when nothing can be banned.
        """
        n = self.size
        t = generated.shape[1]
        if t < n:
            return None
        lo, hi = max(0, t - self.window), t - n + 1  # n-gram start positions [lo, hi)
        if lo >= hi:
            return None
        prefix = generated[:, t - n + 1 :]  # [B, n-1]
        if n > 1:
            starts = generated[:, lo : hi + n - 2].unfold(1, n - 1, 1)  # [B, hi-lo, n-1]
            match = (starts == prefix[:, None, :]).all(dim=-1)  # [B, hi-lo]
        else:
            match = torch.ones(generated.shape[0], hi - lo, dtype=torch.bool, device=generated.device)
        if lengths is not None or windows is not None:
            start = torch.arange(lo, hi, device=generated.device)
            if lengths is not None:  # an n-gram must start at a real token of its row
                match = match & (start[None, :] >= t - lengths.to(generated.device)[:, None])
            if windows is not None:  # ... and inside its row's own window
                match = match & (start[None, :] >= t - windows.to(generated.device)[:, None])
        following = generated[:, lo + n - 1 : t]  # [B, hi-lo] the token each n-gram ends with
        hits = torch.zeros(generated.shape[0], vocab_size, dtype=torch.int32, device=generated.device)
        hits.scatter_add_(1, following, match.to(torch.int32))
        mask = hits > 0
        if self.whitelist:
            mask[:, list(self.whitelist)] = False
        return mask

    def apply(
        self,
        logits: torch.Tensor,
        generated: torch.Tensor,
        lengths: torch.Tensor | None = None,
        windows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Set banned logits [B, V] to -inf in place and return them (arguments as :meth:`banned`)."""
        mask = self.banned(generated, logits.shape[-1], lengths, windows)
        if mask is not None:
            logits.masked_fill_(mask, float("-inf"))
        return logits


