"""One transformer block: attention and MLP, each wrapped in a residual and a norm."""

from __future__ import annotations

import torch
from torch import nn

from parrot.model.attention import Attention, AttentionInputs
from parrot.model.config import ModelConfig
from parrot.model.mlp import MLP
from parrot.model.norms import make_norm


class Block(nn.Module):
    """Pre-norm (GPT-2, Llama) or post-norm (the original Transformer, BERT)."""

    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.pre_norm = cfg.norm_placement == "pre"
        self.norm1 = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps, cfg.bias)
        self.attn = Attention(cfg)
        self.norm2 = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps, cfg.bias)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, inputs: AttentionInputs) -> torch.Tensor:
        """x (B, T, d_model) -> (B, T, d_model)."""
        if self.pre_norm:
            x = x + self._attend(self.norm1(x), inputs)
            x = x + self._feed_forward(self.norm2(x))
        else:
            x = self.norm1(x + self._attend(x, inputs))
            x = self.norm2(x + self._feed_forward(x))
        return x

    def _attend(self, h: torch.Tensor, inputs: AttentionInputs) -> torch.Tensor:
        return self.drop(self.attn(h, inputs, self.layer))

    def _feed_forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.drop(self.mlp(h))
