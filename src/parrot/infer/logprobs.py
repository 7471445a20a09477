"""Log-probabilities of tokens: what an API reports next to each generated (or prompt) token.

A model's logits z over the vocabulary give log p(i) = z_i − logsumexp(z). Reported values
come from the model's own distribution, before temperature, top-k/p or penalties, as vLLM
and the OpenAI API do, so a score does not depend on how the token was sampled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TokenLogprob:
    """One token's log-probability and the `top` most likely alternatives at its position."""

    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


def token_logprobs(logits: torch.Tensor, token_ids: Sequence[int], top: int = 0
                   ) -> list[TokenLogprob]:
    """For rows of (N, V) logits and the N tokens chosen from them: each token's log p and
    its row's `top` best (id, log p) pairs, most likely first."""
    logp = torch.log_softmax(logits.float(), dim=-1)  # z − logsumexp(z), in float32
    ids = torch.as_tensor(list(token_ids), dtype=torch.long, device=logp.device)
    chosen = logp.gather(-1, ids[:, None])[:, 0].tolist()
    values, indices = torch.topk(logp, min(top, logp.shape[-1]), dim=-1)  # top = 0: none
    pairs = [tuple(zip(i, v, strict=True)) for i, v in
             zip(indices.tolist(), values.tolist(), strict=True)]
    return [TokenLogprob(t, lp, p) for t, lp, p in
            zip(ids.tolist(), chosen, pairs, strict=True)]


def prompt_logprobs(model: torch.nn.Module, ids: Sequence[int], top: int = 0
                    ) -> list[TokenLogprob | None]:
    """log p(ids[t] | ids[:t]) for every prompt position; the first has no context: None.

    One forward pass over the whole prompt, no cache: the logits at position t − 1 score
    the token at t (the quantity log-likelihood evaluation sums).
    """
    device = next(model.parameters()).device
    with torch.inference_mode():
        logits = model(torch.tensor([list(ids)], dtype=torch.long, device=device))[0]
    return [None, *token_logprobs(logits[:-1], ids[1:], top)]
