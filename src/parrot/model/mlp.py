"""The position-wise feed-forward network: plain (relu, gelu) or gated (SwiGLU, GeGLU)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from parrot.model.config import ModelConfig
from parrot.model.fusion import can_stack, stack_linears


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
        self.gate_up_proj: nn.Linear | None = None  # gate and up stacked by `fuse_projections`

    def fuse_projections(self) -> None:
        """Replace gate_proj and up_proj by one stacked `gate_up_proj` (inference only)."""
        parts = [self.gate_proj, self.up_proj]
        if self.gate_up_proj is None and self.gate_proj is not None and can_stack(parts):
            self.gate_up_proj = stack_linears(parts)
            self.gate_proj = self.up_proj = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate_up_proj is not None:
            gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
            return self.down_proj(self.act(gate) * up)
        if self.gate_proj is None:
            return self.down_proj(self.act(self.up_proj(x)))
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))
