"""Batched greedy decoding with a KV cache, left padding, per-row stops and the windowed n-gram blocker."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from deepocr_cli.model.decoder import KVCache
from deepocr_cli.model.modeling import DeepOcrForCausalLM

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

    def banned(self, generated: torch.Tensor, vocab_size: int) -> torch.Tensor | None:
        """Banned-token mask for the next step.

        Args:
            generated: [B, t] generated ids so far, or only their last ``window + size`` (the
                window is measured back from the newest token, so the result is the same).
            vocab_size: width of the returned mask.

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
        following = generated[:, lo + n - 1 : t]  # [B, hi-lo] the token each n-gram ends with
        hits = torch.zeros(generated.shape[0], vocab_size, dtype=torch.int32, device=generated.device)
        hits.scatter_add_(1, following, match.to(torch.int32))
        mask = hits > 0
        if self.whitelist:
            mask[:, list(self.whitelist)] = False
        return mask

    def apply(self, logits: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
        """Set banned logits [B, V] to -inf in place and return them."""
        mask = self.banned(generated, logits.shape[-1])
        if mask is not None:
            logits.masked_fill_(mask, float("-inf"))
        return logits


@dataclass
class GenerationOutput:
    """Raw results of one batch, rows in input order.

    Attributes:
        tokens: generated ids per row (EOS included when it was produced).
        eos: whether the row stopped on EOS.
        truncated: whether the row hit its token limit without EOS.
        first_top5: the first generated position's five largest raw logits (id, value) per row.
        prefill_s: seconds spent in prefill (embedding splice + decoder over the prompts).
        decode_s: seconds spent in the decode loop.
    """

    tokens: list[list[int]]
    eos: list[bool]
    truncated: list[bool]
    first_top5: list[list[tuple[int, float]]]
    prefill_s: float = 0.0
    decode_s: float = 0.0
    steps: int = 0
    extra: dict[str, float] = field(default_factory=dict)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def generate_batch(
    model: DeepOcrForCausalLM,
    prompts: Sequence[Sequence[int]],
    image_embeds: Sequence[torch.Tensor | None],
    *,
    image_token_id: int,
    eos_token_id: int,
    pad_token_id: int,
    max_new_tokens: int = 8192,
    ngram: NGramBlocker | None = None,
    ignore_eos: bool = False,
) -> GenerationOutput:
    """Greedy-decode a batch of prompts of different lengths in one go.

    Prompts are left-padded; each row gets its own RoPE positions (0 at its first real token) and an
    attention mask hiding the padding, so padding never changes a row's result. Rows leave the batch
    (and its KV cache) as soon as they emit EOS or reach their limit.

    Args:
        model: the network, in eval mode.
        prompts: token ids per row (with `<image>` placeholders).
        image_embeds: per row, its vision embeddings (one per placeholder) or None.
        image_token_id: placeholder id.
        eos_token_id: stop id.
        pad_token_id: id written into padding (never attended).
        max_new_tokens: per-row cap; also bounded by ``max_position_embeddings - len(prompt)``.
        ngram: the no-repeat blocker, or None to disable it.
        ignore_eos: keep generating after EOS (benchmarks with a fixed output length).

    Returns:
        The generated ids and flags per row.
    """
    device = model.device
    rows = len(prompts)
    if rows == 0:
        return GenerationOutput([], [], [], [])
    lengths = [len(p) for p in prompts]
    if min(lengths) == 0:
        raise ValueError("every prompt needs at least one token")
    max_pos = model.config.decoder.max_position_embeddings
    limits = [max(0, min(max_new_tokens, max_pos - n)) for n in lengths]
    width = max(lengths)

    t0 = time.perf_counter()
    ids = torch.full((rows, width), pad_token_id, dtype=torch.long)
    valid = torch.zeros((rows, width), dtype=torch.bool)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(list(p), dtype=torch.long)
        valid[i, width - len(p) :] = True
    ids, valid = ids.to(device), valid.to(device)
    position_ids = (valid.long().cumsum(dim=1) - 1).clamp(min=0)  # [B, L]
    embeds = model.embed(ids, image_token_id, image_embeds)
    cache = KVCache(model.config.decoder.num_hidden_layers)
    logits = model.forward_logits(embeds, position_ids, valid, cache)  # [B, V] fp32
    top_vals, top_ids = logits.topk(min(5, logits.shape[-1]), dim=-1)
    first_top5 = [
        list(zip(r_ids, r_vals, strict=True))
        for r_ids, r_vals in zip(top_ids.tolist(), top_vals.tolist(), strict=True)
    ]
    _sync(device)
    t1 = time.perf_counter()

    max_steps = max(limits)
    history = ngram.history if ngram is not None else 0
    generated = torch.zeros((rows, max(max_steps, 1)), dtype=torch.long, device=device)  # batch-row order
    active = torch.arange(rows, device=device)  # original row of each batch row
    active_rows = list(range(rows))
    limit_t = torch.tensor(limits, device=device)
    prompt_len = torch.tensor(lengths, device=device)
    final: list[list[int]] = [[] for _ in range(rows)]
    eos = [False] * rows
    steps = 0
    for step in range(max_steps):
        if ngram is not None and step >= ngram.size:
            # Only the last window+n tokens matter; the window is measured from the newest token.
            ngram.apply(logits, generated[:, max(0, step - history) : step])
        token = logits.argmax(dim=-1)  # [b]
        generated[:, step] = token
        steps += 1
        hit = token == eos_token_id
        stop = step + 1 >= limit_t.index_select(0, active)
        if not ignore_eos:
            stop = stop | hit
        stop_host = stop.tolist()  # the one host sync per step
        if any(stop_host):
            hit_host = hit.tolist()
            keep = []
            for j, s in enumerate(stop_host):
                if s:
                    final[active_rows[j]] = generated[j, : step + 1].tolist()
                    eos[active_rows[j]] = bool(hit_host[j]) and not ignore_eos
                else:
                    keep.append(j)
            if not keep:
                break
            keep_t = torch.tensor(keep, device=device)
            active, token = active.index_select(0, keep_t), token.index_select(0, keep_t)
            generated = generated.index_select(0, keep_t)
            cache.select_rows(keep_t)
            active_rows = [active_rows[j] for j in keep]
        step_embeds = model.model.embed_tokens(token[:, None])  # [b, 1, H]
        pos = (prompt_len.index_select(0, active) + step)[:, None]  # [b, 1]
        logits = model.forward_logits(step_embeds, pos, torch.ones_like(pos, dtype=torch.bool), cache)
    _sync(device)
    t2 = time.perf_counter()
    truncated = [not e for e in eos]
    return GenerationOutput(final, eos, truncated, first_top5, t1 - t0, t2 - t1, steps)
