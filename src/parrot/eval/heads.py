"""Which attention heads matter: gradient importance and single-head ablation.

Michel et al. (2019) gate every head's output with a scalar xi_h (1 = kept, 0 = removed)
and score a head by how much the loss moves when its gate does:

    I_h = E_x | d L(x) / d xi_h |      at xi = 1

one backward pass per batch gives all L x H importances at once. Single-head ablation is
the direct measurement it approximates: set one xi_h to 0 and record the loss change

    A_h = L(xi with xi_h = 0) - L(xi = 1)

(L x H forward passes). The gates enter the model from outside, through the `head_mask`
argument the caller passes (`AttentionInputs.head_mask`); the model keeps no state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from parrot.errors import ParrotError
from parrot.model.attention import Attention


@dataclass(frozen=True)
class HeadReport:
    """Per-head scores (n_layers, n_heads) on the same data, and the unmasked loss."""

    importance: torch.Tensor  # mean |dL/dxi| over batches
    ablation: torch.Tensor | None  # loss increase when the head alone is removed
    base_loss: float
    tokens: int


def head_shape(model: nn.Module) -> tuple[int, int]:
    """(n_layers, n_heads) of a decoder with attention; ParrotError for anything else."""
    cfg = getattr(model, "config", None)
    has_attention = any(isinstance(m, Attention) for m in model.modules())
    if not has_attention or cfg is None or getattr(cfg, "is_encoder_decoder", False):
        raise ParrotError("This model has no decoder attention heads to analyze (it is not a "
                          "decoder-only transformer); give a transformer decoder such as a "
                          "parrot train run or smollm2-135m-instruct.")
    return cfg.n_layers, cfg.n_heads


def text_windows(ids: list[int], length: int, count: int) -> torch.Tensor:
    """Up to `count` disjoint windows of length + 1 ids (inputs and shifted targets),
    (N, length + 1) long, from the start of `ids`; ParrotError when not even one fits."""
    n = min(count, len(ids) // (length + 1))
    if n < 1:
        raise ParrotError(f"The data has {len(ids)} tokens; head analysis needs at least "
                          f"{length + 1} (one window); give more text or a shorter --seq-len.")
    return torch.tensor(ids[: n * (length + 1)], dtype=torch.long).view(n, length + 1)


def masked_loss(model: nn.Module, windows: torch.Tensor, head_mask: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the windows (N, T + 1) with gates head_mask."""
    logits = model(windows[:, :-1], head_mask=head_mask)                  # (N, T, V)
    return F.cross_entropy(logits.flatten(0, 1).float(), windows[:, 1:].flatten())


def head_importance(model: nn.Module, windows: torch.Tensor, batch_size: int = 1,
                    ) -> tuple[torch.Tensor, float]:
    """(I (n_layers, n_heads), mean loss): I_h = mean over batches of |dL_batch/dxi_h| at
    xi = 1. batch_size = 1 takes the absolute value per window, as Michel et al. do per
    example; larger batches average gradients first (cheaper, smaller scores)."""
    shape = head_shape(model)
    total, loss_sum, batches = torch.zeros(shape, dtype=torch.float64), 0.0, 0
    for start in range(0, len(windows), batch_size):
        xi = torch.ones(shape, requires_grad=True)
        with torch.enable_grad():
            loss = masked_loss(model, windows[start:start + batch_size], xi)
            (grad,) = torch.autograd.grad(loss, xi)
        total += grad.abs().double()
        loss_sum, batches = loss_sum + float(loss.detach()), batches + 1
    return (total / batches).float(), loss_sum / batches


@torch.no_grad()
def head_ablation(model: nn.Module, windows: torch.Tensor,
                  progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """A (n_layers, n_heads): loss with head (l, h) alone gated off minus the full loss."""
    n_layers, n_heads = head_shape(model)
    base = float(masked_loss(model, windows, torch.ones(n_layers, n_heads)))
    out = torch.zeros(n_layers, n_heads)
    for layer in range(n_layers):
        for head in range(n_heads):
            xi = torch.ones(n_layers, n_heads)
            xi[layer, head] = 0.0
            out[layer, head] = float(masked_loss(model, windows, xi)) - base
            if progress is not None:
                progress(layer * n_heads + head + 1, n_layers * n_heads)
    return out


def analyze_heads(model: nn.Module, windows: torch.Tensor, ablation: bool = True,
                  progress: Callable[[int, int], None] | None = None) -> HeadReport:
    """Importance and (optionally) ablation of every head on the same windows."""
    importance, loss = head_importance(model, windows)
    ablated = head_ablation(model, windows, progress) if ablation else None
    return HeadReport(importance, ablated, loss, windows[:, 1:].numel())


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of two equally shaped tensors (ties broken by order)."""
    ra = a.flatten().argsort().argsort().double()
    rb = b.flatten().argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()).clamp(min=1e-12))
