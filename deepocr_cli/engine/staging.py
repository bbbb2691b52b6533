"""Input embeddings of newly admitted sequences: vision encoding, batched, optionally on a side CUDA stream.

:class:`VisionStager` turns admitted sequences into their prefill inputs ([context, H] embeddings):
the images of one admission are encoded together (the model groups views by shape), an OOM halves
the batch, and the vision embeddings are spliced at the `<image>` positions, which are read from the
prompt ids on the host (no device read, unlike a mask-count on the device).

With ``overlap`` on CUDA the whole of it runs on a side stream: the host only launches the work, the
scheduler decodes the running batch on the main stream meanwhile, and a sequence's prefill starts
once its event has fired (``ready``), or after an event wait on the main stream (``wait``) when the
scheduler has nothing else to do. Off CUDA ``overlap`` has no stream to use and the work runs in
line, with the same results.
"""

from __future__ import annotations

from typing import Any

import torch

from deepocr_cli.engine.sequence import Sequence
from deepocr_cli.errors import OutOfResourcesError


class VisionStager:
    """Builds ``Sequence.embeds`` for admitted sequences (see the module docstring).

    Attributes:
        stream: the side stream (None: in line on the current stream).
    """

    def __init__(self, model: Any, image_token_id: int, overlap: bool = False) -> None:
        self.model, self.image_token_id = model, image_token_id
        cuda = model.device.type == "cuda"
        self.stream = torch.cuda.Stream(model.device) if overlap and cuda else None
        self._events: dict[int, Any] = {}  # sequence index -> event recorded after its embeddings

    def embed(self, seqs: list[Sequence]) -> int:
        """Set ``embeds`` of ``seqs`` (prompt + generated so far; images encoded together).

        Returns:
            Positions embedded again for sequences resumed after a preemption.
        """
        if self.stream is None:
            return self._embed(seqs)
        main = torch.cuda.current_stream(self.model.device)  # pragma: no cover - CUDA only
        with torch.cuda.stream(self.stream):  # pragma: no cover
            recomputed = self._embed(seqs)
            event = torch.cuda.Event()
            event.record(self.stream)
        for s in seqs:  # pragma: no cover
            assert s.embeds is not None
            s.embeds.record_stream(main)  # used and freed on the main stream: keep the allocator from reusing it early
            self._events[s.index] = event
        return recomputed  # pragma: no cover

    def ready(self, seq: Sequence) -> bool:
        """Whether ``seq``'s embeddings are computed (always, without a side stream)."""
        event = self._events.get(seq.index)
        return event is None or event.query()

    def wait(self, seqs: list[Sequence]) -> None:
        """Make the current stream wait for the embeddings of ``seqs`` (no host block)."""
        for s in seqs:
            event = self._events.pop(s.index, None)
            if event is not None:  # pragma: no cover - CUDA only
                torch.cuda.current_stream(self.model.device).wait_event(event)

    def forget(self, seq: Sequence) -> None:
        """Drop ``seq``'s event (finished or preempted)."""
        self._events.pop(seq.index, None)

    def _embed(self, seqs: list[Sequence]) -> int:
        recomputed = 0
        with_image = [s for s in seqs if s.request.image is not None]
        encoded = self._encode([s.request.image for s in with_image]) if with_image else []
        vision = {id(s): e for s, e in zip(with_image, encoded, strict=True)}
        device = self.model.device
        for s in seqs:
            ids = torch.tensor([*s.request.prompt_ids, *s.generated], dtype=torch.long)
            where = (ids == self.image_token_id).nonzero().flatten()  # host: no device read
            if device.type == "cuda":  # pragma: no cover - CUDA only
                ids, where = ids.pin_memory(), where.pin_memory()
            embeds = self.model.token_embeddings(ids.to(device, non_blocking=True))  # [L, H]
            vis = vision.get(id(s))
            count = 0 if vis is None else vis.shape[0]
            if count != where.numel():
                raise ValueError(f"{where.numel()} <image> placeholders but {count} vision embeddings")
            if count:
                embeds.index_copy_(0, where.to(device, non_blocking=True), vis.to(embeds.dtype))
            s.embeds = embeds
            if s.generated:
                recomputed += len(ids)
        return recomputed

    def _encode(self, images: list[Any]) -> list[torch.Tensor]:
        """Vision embeddings of ``images``; on a device OOM, in halves (down to one image)."""
        try:
            return self.model.encode_images(images)
        except torch.OutOfMemoryError:
            if self.model.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(images) == 1:
                raise OutOfResourcesError("out of memory encoding a single image; use a smaller mode") from None
            half = len(images) // 2
            return self._encode(images[:half]) + self._encode(images[half:])
