"""The whole DeepSeek-OCR network, with state_dict keys equal to the official checkpoint names (facts §2)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from torch import nn

from deepocr_cli.model.configuration import DeepOcrConfig
from deepocr_cli.model.decoder import DeepOcrTextModel
from deepocr_cli.model.image_processing import PreparedImage, prepare_image
from deepocr_cli.model.sam import DeepOcrSamEncoder
from deepocr_cli.model.vision import DeepOcrClipEncoder, DeepOcrProjector, embed_images
from deepocr_cli.planning.modes import DEFAULT_MAX_TILES, DEFAULT_MIN_TILES, Mode

log = logging.getLogger(__name__)


class DeepOcrModel(DeepOcrTextModel):
    """Decoder plus the vision towers, projector and the two learned layout vectors (prefix ``model.``)."""

    def __init__(self, cfg: DeepOcrConfig) -> None:
        super().__init__(cfg.decoder)
        self.sam_model = DeepOcrSamEncoder(cfg.sam)
        self.vision_model = DeepOcrClipEncoder(cfg.clip)
        self.projector = DeepOcrProjector(cfg.projector_input_dim, cfg.projector_n_embed)
        self.image_newline = nn.Parameter(torch.zeros(cfg.projector_n_embed))
        self.view_seperator = nn.Parameter(torch.zeros(cfg.projector_n_embed))  # sic: checkpoint spelling


class DeepOcrForCausalLM(nn.Module):
    """DeepSeek-OCR for inference: vision encoding, embedding splice, decoder and lm_head.

    Attributes:
        config: the parsed configuration.
        model: :class:`DeepOcrModel` (checkpoint prefix ``model.``).
        lm_head: untied output projection (``lm_head.weight``).
    """

    def __init__(self, cfg: DeepOcrConfig) -> None:
        super().__init__()
        self.config = cfg
        self.model = DeepOcrModel(cfg)
        self.lm_head = nn.Linear(cfg.decoder.hidden_size, cfg.decoder.vocab_size, bias=False)

    @property
    def device(self) -> torch.device:
        """Device of the decoder weights."""
        return self.lm_head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype of the decoder weights."""
        return self.lm_head.weight.dtype

    def prepare_for_inference(self) -> DeepOcrForCausalLM:
        """Eval mode, no gradients, and routed experts stacked for batched dispatch."""
        self.eval()
        self.requires_grad_(False)
        self.model.fuse_experts()
        return self

    @staticmethod
    def prepare_image(
        image: Image.Image, mode: Mode, min_tiles: int = DEFAULT_MIN_TILES, max_tiles: int = DEFAULT_MAX_TILES
    ) -> PreparedImage:
        """Encoder inputs of one page in one mode (CPU only; each model family preprocesses its own way)."""
        return prepare_image(image, Mode(mode), min_tiles, max_tiles)

    @torch.no_grad()
    def encode_images(self, images: Sequence[PreparedImage]) -> list[torch.Tensor]:
        """Vision embeddings per image, [num_embeddings_i, hidden] each, in the decoder's dtype."""
        m = self.model
        return embed_images(
            m.sam_model, m.vision_model, m.projector, m.image_newline, m.view_seperator, images
        )

    def embed(
        self, input_ids: torch.Tensor, image_token_id: int, image_embeds: Sequence[torch.Tensor | None]
    ) -> torch.Tensor:
        """Token embeddings with the `<image>` placeholders replaced, row by row, in order.

        Args:
            input_ids: [B, L] token ids.
            image_token_id: id of the `<image>` placeholder.
            image_embeds: per row, [n_i, hidden] vision embeddings (n_i = placeholders in row i) or None.

        Returns:
            [B, L, hidden] input embeddings.

        Raises:
            ValueError: a row's placeholder count differs from its vision-embedding count.
        """
        embeds = self.model.embed_tokens(input_ids)  # [B, L, H]
        is_image = input_ids == image_token_id  # [B, L]
        counts = is_image.sum(dim=1).tolist()
        parts = []
        for row, (count, vis) in enumerate(zip(counts, image_embeds, strict=True)):
            n = 0 if vis is None else vis.shape[0]
            if n != count:
                raise ValueError(f"row {row}: {count} <image> placeholders but {n} vision embeddings")
            if n:
                parts.append(vis.to(embeds.dtype))
        if parts:
            embeds[is_image] = torch.cat(parts, dim=0)  # row-major order matches the row loop
        return embeds

    def token_embeddings(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Plain token embeddings [..., hidden] (decode steps: no `<image>` ids, no host sync)."""
        return self.model.embed_tokens(input_ids)

    def forward_logits(
        self,
        inputs_embeds: torch.Tensor,
        position_ids: torch.Tensor,
        valid: torch.Tensor,
        paged: Any = None,
        last_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Decoder + lm_head.

        Args:
            inputs_embeds: [B, L, H].
            position_ids: [B, L].
            valid: [B, L] True for real tokens.
            paged: paged KV cache batch to read and extend (None: no cache).
            last_index: [B] the position per row whose logits are wanted (prefill never needs the
                others); None for logits at every position.

        Returns:
            float32 logits [B, V] with ``last_index``, else [B, L, V].
        """
        hidden = self.model(inputs_embeds, position_ids, valid, paged)  # [B, L, H]
        if last_index is not None:
            hidden = hidden[torch.arange(hidden.shape[0], device=hidden.device), last_index]  # [B, H]
        return self.lm_head(hidden).float()
