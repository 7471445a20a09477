"""The position-wise feed-forward network: plain (relu, gelu) or gated (SwiGLU, GeGLU)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from parrot.model.config import ModelConfig


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GELU's tanh approximation (GPT-2's `gelu_new`):
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return F.gelu(x, approximate="tanh")


# The activation inside each MLP kind (gated kinds apply it to the gate branch).
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_tanh": gelu_tanh,
    "swiglu": F.silu,
    "geglu": F.gelu,
    "geglu_tanh": gelu_tanh,
}


class MLP(nn.Module):
    """Plain: down(act(up(x))).  Gated (Shazeer 2020): down(act(gate(x)) * up(x))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.act = ACTIVATIONS[cfg.mlp]
        self.up_proj = nn.Linear(cfg.d_model, cfg.ff_size, bias=cfg.bias)
        self.gate_proj = nn.Linear(cfg.d_model, cfg.ff_size, bias=cfg.bias) if cfg.gated else None
        self.down_proj = nn.Linear(cfg.ff_size, cfg.d_model, bias=cfg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate_proj is None:
            return self.down_proj(self.act(self.up_proj(x)))
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))
