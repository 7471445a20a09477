"""`build_model(cfg)`: the module a config describes (decoder-only/encoder or encoder-decoder)."""

from __future__ import annotations

from torch import nn

from parrot.model.config import ModelConfig
from parrot.model.seq2seq import EncoderDecoder
from parrot.model.transformer import Transformer


def build_model(cfg: ModelConfig) -> nn.Module:
    """An `EncoderDecoder` when cfg.encoder_layers > 0, else a `Transformer`."""
    return EncoderDecoder(cfg) if cfg.is_encoder_decoder else Transformer(cfg)
