"""Training objectives: `objective(model, batch) -> (loss, metrics)`.

The loop knows nothing about what is being learned; an objective turns one batch into a
scalar loss to minimise and a few detached numbers worth logging.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from parrot.model.moe import moe_aux_loss
from parrot.training.objectives_mlm import bind_mlm
from parrot.training.objectives_seq2seq import bind_denoise

Objective = Callable[[nn.Module, torch.Tensor], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy  -1/N * sum_t log softmax(logits_t)[target_t]  over all positions.

    logits (B, T, V) in any float dtype (upcast to fp32 for a stable log-softmax); targets (B, T).
    """
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


def next_token(model: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Next-token prediction on windows (B, T+1): inputs are [:, :-1], targets [:, 1:].

    In training, MoE layers with moe_balance="aux_loss" add their auxiliary balancing loss
    (validation in eval mode stays plain cross-entropy).
    """
    logits = model(batch[:, :-1])  # (B, T, V)
    loss = next_token_loss(logits, batch[:, 1:])
    metrics = {"loss": loss.detach()}
    aux = moe_aux_loss(model) if model.training else None
    if aux is not None:
        metrics["aux_loss"] = aux.detach()
        loss = loss + aux
    return loss, metrics


# The pretraining objectives by name, each made from the run's tokenizer (masked LM and
# denoising bind its special ids, or raise ParrotError when it lacks them).
OBJECTIVES: dict[str, Callable[[Any], Objective]] = {
    "next_token": lambda tokenizer: next_token,
    "mlm": bind_mlm,          # masked LM (objectives_mlm.py)
    "denoise": bind_denoise,  # BART-style (objectives_seq2seq.py); encoder-decoders only
}


def objective_for(name: str, tokenizer: Any) -> Objective:
    """The objective `name`, bound to `tokenizer` when it needs to be."""
    return OBJECTIVES[name](tokenizer)
