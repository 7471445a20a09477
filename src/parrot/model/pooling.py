"""Sentence embeddings from hidden states: pool the tokens of each row, then normalize.

    mean:  e_b = sum_t m_bt h_bt / max(sum_t m_bt, eps)      (m = attention mask, 1 = real)
    cls:   e_b = h_b0                                        (the [CLS] position)
    l2:    e / max(||e||_2, eps)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

POOLINGS = ("mean", "cls")


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor,
              eps: float = 1e-9) -> torch.Tensor:
    """hidden (B, T, d), attention_mask (B, T) → the mean of each row's real tokens (B, d)."""
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)                 # (B, T, 1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=eps)


def cls_pool(hidden: torch.Tensor) -> torch.Tensor:
    """hidden (B, T, d) → the first position of each row (B, d)."""
    return hidden[:, 0]


def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Rows scaled to unit Euclidean length (a zero row stays zero)."""
    return F.normalize(x, p=2.0, dim=-1, eps=eps)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str = "mean") -> torch.Tensor:
    """`mean_pool` or `cls_pool` by name."""
    if mode == "cls":
        return cls_pool(hidden)
    if mode == "mean":
        return mean_pool(hidden, attention_mask)
    raise ValueError(f"unknown pooling {mode!r}; choose one of {POOLINGS}")
