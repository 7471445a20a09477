"""A quick sampling loop without a KV cache: recompute the window, pick the next token.

Good enough to look at what a freshly trained model writes; the inference engine does the
same job fast (cache, batching, stop strings).
"""

from __future__ import annotations

import torch
from torch import nn


def pick_next(logits: torch.Tensor, temperature: float, generator: torch.Generator) -> int:
    """argmax at temperature 0, else a draw from softmax(logits / temperature)."""
    if temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


@torch.no_grad()
def sample_ids(
    model: nn.Module, prompt: list[int], context: int, max_new_tokens: int,
    temperature: float = 0.8, seed: int = 0, stop_id: int | None = None,
) -> list[int]:
    """Extend `prompt` by up to `max_new_tokens` ids, seeing at most `context` ids at a time."""
    generator = torch.Generator().manual_seed(seed)
    ids = list(prompt)
    for _ in range(max_new_tokens):
        window = torch.tensor([ids[-context:]], dtype=torch.long)
        next_id = pick_next(model(window)[0, -1], temperature, generator)
        if next_id == stop_id:
            break
        ids.append(next_id)
    return ids[len(prompt):]
