"""One transformer block: attention and MLP, each wrapped in a residual and a norm."""

from __future__ import annotations

import torch
from torch import nn

from parrot.model.attention import Attention, AttentionInputs
from parrot.model.config import ModelConfig
from parrot.model.mlp import MLP
from parrot.model.moe import MoE
from parrot.model.norms import make_norm


class Block(nn.Module):
    """Pre-norm (GPT-2, Llama), post-norm (the original Transformer, BERT) or sandwich
    (Gemma: pre-norm plus a norm on each sublayer's output before the residual add,
    x = x + post_attn_norm(attn(norm1(x))); x = x + post_mlp_norm(mlp(norm2(x)))).
    """

    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.pre_norm = cfg.norm_placement in ("pre", "sandwich")
        self.sliding = cfg.is_sliding(layer)
        self.norm1 = make_norm(cfg)
        self.attn = Attention(cfg)
        self.norm2 = make_norm(cfg)
        self.mlp = MoE(cfg) if cfg.is_moe else MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)
        # Identities (no parameters) unless sandwich, so other placements keep their names.
        sandwich = cfg.norm_placement == "sandwich"
        self.post_attn_norm = make_norm(cfg) if sandwich else nn.Identity()
        self.post_mlp_norm = make_norm(cfg) if sandwich else nn.Identity()

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
        out = self.attn(h, inputs.for_layer(self.sliding), self.layer)
        return self.drop(self.post_attn_norm(out))

    def _feed_forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.drop(self.post_mlp_norm(self.mlp(h)))
