"""Training objectives: `objective(model, batch) -> (loss, metrics)`.

The loop knows nothing about what is being learned; an objective turns one batch into a
scalar loss to minimise and a few detached numbers worth logging.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

Objective = Callable[[nn.Module, torch.Tensor], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy  -1/N * sum_t log softmax(logits_t)[target_t]  over all positions.

    logits (B, T, V) in any float dtype (upcast to fp32 for a stable log-softmax); targets (B, T).
    """
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


def next_token(model: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Next-token prediction on windows (B, T+1): inputs are [:, :-1], targets [:, 1:]."""
    logits = model(batch[:, :-1])  # (B, T, V)
    loss = next_token_loss(logits, batch[:, 1:])
    return loss, {"loss": loss.detach()}


OBJECTIVES: dict[str, Objective] = {"next_token": next_token}
