"""The supervised fine-tuning objective: next-token loss on assistant tokens only.

    loss = sum_t m_t * CE(logits_t, target_t) / sum_t m_t

where m_t is 1 on target tokens that belong to an assistant turn (from the chat renderer)
and 0 on prompts, system text and padding. A data-parallel rank holding part of a batch
scales its mean by `batch.share`, so the ranks' average is the whole batch's loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from parrot.data.sft import SFTBatch


def masked_next_token_loss(logits: torch.Tensor, targets: torch.Tensor,
                           mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over positions where mask is 1; logits (B, T, V), targets/mask (B, T)."""
    per_token = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="none")
    mask = mask.flatten().to(per_token.dtype)
    return (per_token * mask).sum() / mask.sum().clamp(min=1.0)


def sft(model: nn.Module, batch: SFTBatch) -> tuple[torch.Tensor, dict]:
    """SFT objective for `parrot.training.loop`: batch.tokens (B, T+1), batch.mask (B, T).

    Metrics: loss_tokens (assistant tokens scored) and token_accuracy (the share of them
    predicted exactly by argmax)."""
    logits = model(batch.tokens[:, :-1])                                  # (B, T, V)
    targets, mask = batch.tokens[:, 1:], batch.mask.bool()
    loss = masked_next_token_loss(logits, targets, batch.mask) * batch.share
    tokens = mask.sum()
    correct = ((logits.argmax(-1) == targets) & mask).sum()
    return loss, {"loss": loss.detach(), "loss_tokens": tokens.detach(),
                  "token_accuracy": (correct / tokens.clamp(min=1)).detach()}
