"""Counters of what the scheduler ran, and the throughput figures the run report prints."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EngineMetrics:
    """What the scheduler did, summed over its lifetime.

    Attributes:
        slots: most sequences a decode step may hold.
        decode_steps: decode forwards run.
        sequence_steps: sum over decode steps of the sequences they advanced (useful work).
        steady_steps: decode steps run while pages were still waiting (the queue was not draining).
        steady_sequence_steps: sequence-steps of those steps.
        prefill_tokens: prompt (and recomputed) positions run through prefill.
        recomputed_tokens: positions prefilled again after a preemption.
        generated_tokens: tokens produced.
        finished: sequences finished (any reason).
        preemptions: sequences paused to free KV blocks (resumed later by recomputation).
        kv_budget_bytes: KV-cache budget.
        kv_peak_bytes: most KV-cache bytes held at once.
        seconds: wall time spent inside scheduler steps.
        encode_s: of which vision encoding and input embedding (admissions).
        prefill_s: of which prefill forwards.
        decode_s: of which decode forwards and token choice.
    """

    slots: int = 0
    decode_steps: int = 0
    sequence_steps: int = 0
    steady_steps: int = 0
    steady_sequence_steps: int = 0
    prefill_tokens: int = 0
    recomputed_tokens: int = 0
    generated_tokens: int = 0
    finished: int = 0
    preemptions: int = 0
    kv_budget_bytes: int = 0
    kv_peak_bytes: int = 0
    seconds: float = 0.0
    encode_s: float = 0.0
    prefill_s: float = 0.0
    decode_s: float = 0.0

    @property
    def avg_running(self) -> float:
        """Average sequences per decode step."""
        return self.sequence_steps / self.decode_steps if self.decode_steps else 0.0

    @property
    def occupancy(self) -> float:
        """Useful sequence-steps / slot-steps over all decode steps."""
        return self.sequence_steps / (self.decode_steps * self.slots) if self.decode_steps else 0.0

    @property
    def steady_occupancy(self) -> float:
        """Occupancy over the decode steps run while pages were waiting (the steady state)."""
        return self.steady_sequence_steps / (self.steady_steps * self.slots) if self.steady_steps else 0.0

    def merge(self, other: EngineMetrics) -> None:
        """Add another run's counters (peaks take the maximum)."""
        for name in self.__dataclass_fields__:
            a, b = getattr(self, name), getattr(other, name)
            if name in ("slots", "kv_budget_bytes", "kv_peak_bytes"):
                setattr(self, name, max(a, b))
            else:
                setattr(self, name, a + b)

    def report(self) -> dict[str, float | int]:
        """The figures for ``--json`` reports and summaries (rates over ``seconds``)."""
        s = self.seconds
        return {
            "generated_tokens": self.generated_tokens,
            "generated_tok_per_s": round(self.generated_tokens / s, 2) if s else 0.0,
            "pages": self.finished,
            "pages_per_s": round(self.finished / s, 4) if s else 0.0,
            "slots": self.slots,
            "avg_running_sequences": round(self.avg_running, 3),
            "slot_occupancy": round(self.occupancy, 4),
            "steady_slot_occupancy": round(self.steady_occupancy, 4),
            "decode_steps": self.decode_steps,
            "prefill_tokens": self.prefill_tokens,
            "recomputed_tokens": self.recomputed_tokens,
            "kv_budget_bytes": self.kv_budget_bytes,
            "kv_peak_bytes": self.kv_peak_bytes,
            "preemptions": self.preemptions,
            "engine_seconds": round(s, 3),
            "encode_s": round(self.encode_s, 3),
            "prefill_s": round(self.prefill_s, 3),
            "decode_s": round(self.decode_s, 3),
        }
