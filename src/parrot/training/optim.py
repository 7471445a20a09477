"""AdamW with decoupled weight decay on matrices only.

Weight decay pulls weights towards zero; that regularises projection matrices but only
hurts norm gains, biases (1-D) and embedding rows (a rare token's row would shrink every
step it is not seen), so those go into a group with no decay.
"""

from __future__ import annotations

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Split trainable parameters into [decayed, not decayed] AdamW groups.

    Decayed: parameters with >= 2 dimensions that do not belong to an `nn.Embedding`.
    A tied output head shares its tensor with the embedding, so it is counted once (no decay).
    """
    embedding_ids = {
        id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()
    }
    decay, no_decay = [], []
    for p in model.parameters():  # a tensor shared by tying comes once
        if not p.requires_grad:
            continue
        if p.dim() >= 2 and id(p) not in embedding_ids:
            decay.append(p)
        else:
            no_decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_adamw(
    model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float]
) -> torch.optim.AdamW:
    """AdamW over `param_groups`, using the fused kernel when this torch build has one."""
    groups = param_groups(model, weight_decay)
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError):  # fused unsupported for this device/dtype
        return torch.optim.AdamW(groups, lr=lr, betas=betas)
