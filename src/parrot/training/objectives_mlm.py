"""Masked language modelling (BERT): hide some tokens, predict them from both sides.

Of the ordinary (non-special) tokens, each is selected with probability 15%; a selected
token becomes [MASK] with probability 80%, a uniformly random token with 10%, and stays
as it is with 10%. The loss is the cross-entropy at selected positions only:

    loss = sum_t s_t * CE(logits_t, x_t) / sum_t s_t        (s_t = 1 if t was selected)

Unselected positions carry the target IGNORE (-100), which `cross_entropy` skips.
Training draws from torch's global RNG (seeded and checkpointed by the loop); evaluation
masks with a fixed seed so validation losses at different steps compare like with like.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from parrot.errors import ParrotError
from parrot.tokenizer.tokenizer import first_special

IGNORE = -100
MASK_NAMES = ("[MASK]", "<mask>")
EVAL_SEED = 1234


def mask_tokens(tokens: torch.Tensor, mask_id: int, vocab_size: int,
                special_ids: Sequence[int] = (), select_p: float = 0.15,
                mask_p: float = 0.8, random_p: float = 0.1,
                generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's corruption: (inputs, targets), both shaped like `tokens` (B, T).

    targets[t] = tokens[t] where t was selected, IGNORE elsewhere; inputs are tokens with
    selected positions replaced by [MASK] (mask_p), a random id (random_p) or kept (rest).
    Special tokens are never selected.
    """
    def uniform() -> torch.Tensor:
        return torch.rand(tokens.shape, generator=generator, device=tokens.device)

    specials = torch.tensor(list(special_ids), dtype=tokens.dtype, device=tokens.device)
    selected = (uniform() < select_p) & ~torch.isin(tokens, specials)
    action = uniform()
    to_mask = selected & (action < mask_p)
    to_random = selected & (action >= mask_p) & (action < mask_p + random_p)
    random_ids = torch.randint(0, vocab_size, tokens.shape, generator=generator,
                               device=tokens.device, dtype=tokens.dtype)
    inputs = torch.where(to_mask, torch.full_like(tokens, mask_id), tokens)
    inputs = torch.where(to_random, random_ids, inputs)
    targets = torch.where(selected, tokens, torch.full_like(tokens, IGNORE))
    return inputs, targets


def masked_lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over positions whose target is not IGNORE (0 if there are none).

    logits (B, T, V); targets (B, T).
    """
    per_token = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(),
                                ignore_index=IGNORE, reduction="sum")
    return per_token / (targets != IGNORE).sum().clamp(min=1)


def mlm(model: nn.Module, batch: torch.Tensor, *, mask_id: int, vocab_size: int,
        special_ids: Sequence[int] = ()) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The MLM objective on token windows (B, T+1) (the loop's batches; the first T are
    used). The runner binds the tokenizer's facts with `bind_mlm`."""
    tokens = batch[:, :-1]
    generator = None
    if not model.training:  # the same masks at every evaluation
        generator = torch.Generator(device=tokens.device).manual_seed(EVAL_SEED)
    inputs, targets = mask_tokens(tokens, mask_id, vocab_size, special_ids,
                                  generator=generator)
    logits = model(inputs)                                               # (B, T, V)
    loss = masked_lm_loss(logits, targets)
    chosen = targets != IGNORE
    correct = (logits.argmax(-1) == targets) & chosen
    return loss, {"loss": loss.detach(), "masked_tokens": chosen.sum().detach(),
                  "mlm_accuracy": (correct.sum() / chosen.sum().clamp(min=1)).detach()}


def bind_mlm(tokenizer: Any) -> partial:
    """`mlm` with the tokenizer's mask id, vocabulary size and special ids bound;
    ParrotError when the tokenizer has no mask token."""
    mask_id = first_special(MASK_NAMES, tokenizer.special_tokens)  # [MASK] or <mask>
    if mask_id is None:
        raise ParrotError("The mlm objective needs a [MASK] token, and this tokenizer has "
                          "none; train without --tokenizer (a new one gets [MASK]) or give "
                          "a tokenizer with a [MASK] special token.")
    return partial(mlm, mask_id=mask_id, vocab_size=tokenizer.vocab_size,
                   special_ids=tuple(sorted(tokenizer.special_tokens.values())))
