"""A reward model: a transformer with a scalar head on the last real token.

    r(x, y) = w · h_L + b

h_L is the final hidden state (after the final norm) at the last non-padding token of the
rendered prompt + answer: in a causal model it is the only position that has read the
whole sequence. Rows are right-padded, so that position is length - 1.
"""

from __future__ import annotations

import torch
from torch import nn


def last_token_states(hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """hidden (B, T, d), lengths (B,) → hidden[b, lengths[b] - 1] for each row, (B, d)."""
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return hidden[rows, lengths.to(hidden.device) - 1]


class RewardModel(nn.Module):
    """`backbone` (a decoder `Transformer`) plus a Linear(d_model, 1) head. The head starts
    at N(0, 1/d) weights and zero bias, so initial rewards are of order one."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        d_model = backbone.config.d_model
        device = backbone.tok_emb.weight.device
        self.head = nn.Linear(d_model, 1, device=device)
        nn.init.normal_(self.head.weight, std=d_model ** -0.5)
        nn.init.zeros_(self.head.bias)

    @property
    def config(self):
        return self.backbone.config

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """tokens (B, T) right-padded, lengths (B,) real tokens per row → rewards (B,) fp32."""
        hidden = self.backbone.hidden(tokens)                              # (B, T, d)
        last = last_token_states(hidden, lengths)                          # (B, d)
        return self.head(last.to(self.head.weight.dtype)).squeeze(-1).float()
