"""Sequence log-probabilities under a policy and a frozen reference (DPO, GRPO, KL).

    log π(y | x) = sum_t m_t * log softmax(z_t)[y_t]

z_t are the logits at position t, y_t the next token and m_t the completion mask (1 on
the answer's tokens, 0 on the prompt and padding). The reference model's values do not
change during training, so they are computed once, before the first step, and cached on
disk (`reference_logprobs`): a step then runs only the policy.

Cache. DIR/ref-<key>.pt, key = sha256(reference weights and config, every row's ids and
mask), holds a (N, 2) float32 tensor (chosen, rejected) per pair; it is written
atomically, so an interrupted run leaves no partial file, and a resumed run (or a second
run over the same reference and data) reads it back instead of running the reference.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from parrot.data.preference import PreferenceBatch, fixed_preference_batches
from parrot.data.sft import Example
from parrot.training.teacher_cache import model_fingerprint
from parrot.utils.atomic import atomic_path
from parrot.utils.progress import progress_bar


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[labels] per position: logits (B, T, V), labels (B, T) → (B, T)
    float32 (the fused cross-entropy kernel, so it costs what an SFT loss costs)."""
    B, T = labels.shape
    nll = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), reduction="none")
    return -nll.view(B, T)


def sequence_logprobs(logits: torch.Tensor, labels: torch.Tensor,
                      mask: torch.Tensor) -> torch.Tensor:
    """sum_t mask_t * log softmax(logits_t)[labels_t]: (B, T, V), (B, T), (B, T) → (B,)."""
    return (token_logprobs(logits, labels) * mask.to(torch.float32)).sum(-1)


def sequence_kl(policy_logits: torch.Tensor, ref_logits: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
    """sum_t mask_t * KL(π_t || π_ref,t), KL = sum_v π(v) (log π(v) - log π_ref(v)), over
    the whole vocabulary at each position: (B, T, V), (B, T, V), (B, T) → (B,). On
    sequences sampled from π its mean estimates KL(π || π_ref) of whole answers."""
    log_p = F.log_softmax(policy_logits.float(), dim=-1)
    log_q = F.log_softmax(ref_logits.float(), dim=-1)
    per_token = (log_p.exp() * (log_p - log_q)).sum(-1)                  # (B, T)
    return (per_token * mask.to(torch.float32)).sum(-1)


def batch_logprobs(model: nn.Module, batch: PreferenceBatch) -> torch.Tensor:
    """log π(y | x) of every row of a preference batch (2B,): one forward of the model."""
    logits = model(batch.tokens[:, :-1])                                  # (2B, T, V)
    return sequence_logprobs(logits, batch.tokens[:, 1:], batch.mask)


def cache_key(model: nn.Module, pairs: Sequence[tuple[Example, Example]]) -> str:
    """The cache's identity: the reference's weights and config, every pair's ids and mask."""
    digest = hashlib.sha256(model_fingerprint(model).encode())
    for pair in pairs:
        for ids, mask in pair:
            digest.update(repr((ids, mask)).encode())
    return digest.hexdigest()[:24]


@torch.no_grad()
def compute_reference(model: nn.Module, pairs: list[tuple[Example, Example]],
                      batch_size: int = 8, show_progress: bool = False,
                      device: Any = "cpu") -> torch.Tensor:
    """(N, 2) float32: log π_ref(chosen | x), log π_ref(rejected | x) of every pair."""
    was_training = model.training
    model.eval()
    batches = fixed_preference_batches(pairs, batch_size)
    out = []
    with progress_bar("reference log-probs", total=len(batches), enabled=show_progress) as bar:
        for batch in batches:
            logps = batch_logprobs(model, batch.to(device)).cpu()         # (2b,)
            out.append(torch.stack(logps.chunk(2), dim=1))                # (b, 2)
            bar.update(0, advance=1)
    model.train(was_training)
    return torch.cat(out)


def reference_logprobs(model: nn.Module, pairs: list[tuple[Example, Example]],
                       cache_dir: str | Path, batch_size: int = 8,
                       show_progress: bool = False, device: Any = "cpu") -> torch.Tensor:
    """The cached (N, 2) reference log-probabilities of `pairs`, computed and stored when
    missing (see the module docstring)."""
    path = Path(cache_dir) / f"ref-{cache_key(model, pairs)}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    values = compute_reference(model, pairs, batch_size, show_progress, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(values, tmp)
    return values
