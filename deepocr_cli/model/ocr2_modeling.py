"""The whole DeepSeek-OCR-2 network; state_dict keys equal the original checkpoint names (facts §8.3).

The decoder, embedding splice, lm_head and generation are v1's (:class:`DeepOcrForCausalLM`); only the
vision side and the preprocessing differ.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from PIL import Image
from torch import nn

from deepocr_cli.model.decoder import DeepOcrTextModel
from deepocr_cli.model.image_processing import PreparedImage, prepare_image_ocr2
from deepocr_cli.model.modeling import DeepOcrForCausalLM
from deepocr_cli.model.ocr2_config import DeepOcr2Config
from deepocr_cli.model.ocr2_encoder import DeepOcr2Encoder, embed_images_ocr2
from deepocr_cli.model.sam import DeepOcrSamEncoder
from deepocr_cli.model.vision import DeepOcrProjector
from deepocr_cli.planning.families import OCR2
from deepocr_cli.planning.modes import Mode
from deepocr_cli.planning.ocr2_geometry import OCR2_MAX_TILES

log = logging.getLogger(__name__)


class DeepOcr2Model(DeepOcrTextModel):
    """Decoder plus SAM, the Qwen2 encoder, the projector and the view separator (prefix ``model.``)."""

    def __init__(self, cfg: DeepOcr2Config) -> None:
        super().__init__(cfg.decoder)
        self.sam_model = DeepOcrSamEncoder(cfg.sam)
        self.qwen2_model = DeepOcr2Encoder(cfg.encoder)
        self.projector = DeepOcrProjector(cfg.projector_input_dim, cfg.projector_n_embed)
        self.view_seperator = nn.Parameter(torch.zeros(cfg.projector_n_embed))  # sic: checkpoint spelling


class DeepOcr2ForCausalLM(DeepOcrForCausalLM):
    """DeepSeek-OCR-2 for inference: v1's decoder path with DeepEncoder V2 in front."""

    def __init__(self, cfg: DeepOcr2Config) -> None:  # noqa: D107 - v1's constructor, other body
        nn.Module.__init__(self)
        self.config = cfg
        self.model = DeepOcr2Model(cfg)
        self.lm_head = nn.Linear(cfg.decoder.hidden_size, cfg.decoder.vocab_size, bias=False)

    @staticmethod
    def prepare_image(
        image: Image.Image, mode: Mode, min_tiles: int = 2, max_tiles: int = OCR2_MAX_TILES
    ) -> PreparedImage:
        """OCR-2 preprocessing; ``mode`` only sets the tile cap (see :mod:`deepocr_cli.planning.families`)."""
        return prepare_image_ocr2(image, OCR2.tile_cap(mode, max_tiles), min_tiles, Mode(mode))

    @torch.no_grad()
    def encode_images(self, images: Sequence[PreparedImage]) -> list[torch.Tensor]:
        """Vision embeddings per image, [256 + 144*k + 1, hidden] each."""
        m = self.model
        return embed_images_ocr2(m.sam_model, m.qwen2_model, m.projector, m.view_seperator, images)
