"""Perplexity and bits per byte of a model on a whole text, with a sliding window.

A text longer than the model's context is scored window by window. Each window starts
`stride` tokens after the previous one and scores only the targets no earlier window scored,
so every target is predicted exactly once, with at least `context - stride` tokens of context
(except at the start). stride == context gives disjoint windows; a smaller stride costs more
compute and gives each prediction more context.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from parrot.errors import ParrotError


@dataclass(frozen=True)
class Perplexity:
    nll: float  # mean negative log-likelihood per scored token, in nats
    perplexity: float  # exp(nll)
    bits_per_byte: float  # total NLL / ln 2 / number of bytes those tokens decode to
    tokens: int
    bytes: int


def summarize(total_nll: float, n_tokens: int, n_bytes: int) -> Perplexity:
    """perplexity = exp(total / tokens);  bits/byte = total / ln(2) / bytes."""
    nll = total_nll / n_tokens
    return Perplexity(nll, math.exp(nll), total_nll / math.log(2) / n_bytes, n_tokens, n_bytes)


def window_spans(n_ids: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, first_scored) per window: inputs ids[begin:end-1], targets ids[begin+1:end],
    of which targets with index >= first_scored are new."""
    spans, scored_until, begin = [], 1, 0
    while scored_until < n_ids:
        end = min(begin + context + 1, n_ids)
        spans.append((begin, end, scored_until))
        scored_until = end
        begin += stride
    return spans


@torch.no_grad()
def token_nlls(
    model: nn.Module, ids: Sequence[int], context: int, stride: int | None = None,
    device: str | torch.device = "cpu", batch_size: int = 32,
) -> torch.Tensor:
    """-log p(ids[t] | window before t) for t = 1 .. len(ids) - 1, as a float64 tensor.

    Windows of equal length run together in batches of `batch_size`.
    """
    stride = stride or context
    if not 1 <= stride <= context:
        raise ParrotError(f"The stride must lie between 1 and the context ({context}), "
                          f"got {stride}.")
    ids_t = torch.tensor(list(ids), dtype=torch.long, device=device)
    out = torch.empty(max(0, len(ids_t) - 1), dtype=torch.float64)
    spans = window_spans(len(ids_t), context, stride)
    for group in _batches(spans, batch_size):
        windows = torch.stack([ids_t[begin:end] for begin, end, _ in group])  # (B, T+1)
        logits = model(windows[:, :-1]).float()  # (B, T, V)
        nll = F.cross_entropy(logits.transpose(1, 2), windows[:, 1:], reduction="none")
        for row, (begin, end, first) in enumerate(group):
            out[first - 1 : end - 1] = nll[row, first - begin - 1 :].double().cpu()
    return out


def _batches(spans: list[tuple[int, int, int]], size: int) -> list[list[tuple[int, int, int]]]:
    """Consecutive runs of spans with the same window length, at most `size` per run."""
    groups: list[list[tuple[int, int, int]]] = []
    for _, same in itertools.groupby(spans, key=lambda span: span[1] - span[0]):
        same = list(same)
        groups += [same[i : i + size] for i in range(0, len(same), size)]
    return groups


def evaluate_text(
    model: nn.Module, tokenizer, text: str, context: int, stride: int | None = None,
    device: str | torch.device = "cpu",
) -> Perplexity:
    """Mean NLL, perplexity and bits per byte of `model` on `text`.

    With a BOS token every token of the text is scored (BOS is the first context); without
    one the first token has no context and is skipped. Bytes are counted from the scored
    tokens' own bytes (`token_bytes`), so models with different tokenizers compare.
    """
    ids = tokenizer.encode(text)
    if tokenizer.bos_id is not None:
        ids = [tokenizer.bos_id, *ids]
    if len(ids) < 2:
        raise ParrotError("The evaluation text is too short: it needs at least two tokens.")
    nlls = token_nlls(model, ids, context, stride, device)
    n_bytes = sum(len(tokenizer.token_bytes(i)) for i in ids[1:])
    if n_bytes == 0:
        raise ParrotError("The evaluation text decodes to zero bytes; give real text.")
    return summarize(float(nlls.sum()), len(nlls), n_bytes)
