"""Encoder-decoder objectives: supervised pairs and BART-style denoising.

Pairs (teacher forcing): the decoder reads <s> y_1..y_n and is scored on y_1..y_n </s>:

    loss = -1/N * sum over target tokens t of log p(y_t | y_<t, x)

with N the number of real (non-padding) target tokens.

Denoising (BART, Lewis et al. 2019): the encoder reads a corrupted text, the decoder
restores the original. The corruptions here, all pure functions of a seeded generator:
  - text infilling: spans whose lengths are drawn from Poisson(lambda = 3) cover
    `mask_ratio` of the tokens; each span, even a zero-length one, becomes ONE <mask>, so
    the model must also work out how many tokens are missing;
  - token deletion: a fraction of the tokens is removed (no marker left);
  - sentence permutation: sentences (ending at chosen ids) are shuffled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from parrot.data.pairs import (
    IGNORE,
    PairBatch,
    Seq2SeqTokens,
    make_batch,
    tokens_from_specials,
)
from parrot.errors import ParrotError


def seq2seq_loss(model: nn.Module, batch: PairBatch) -> tuple[torch.Tensor, dict]:
    """Cross-entropy on the real target tokens of a PairBatch (padding labels are IGNORE)."""
    logits = model(batch.src, batch.tgt_in, batch.src_mask)            # (B, T, V)
    loss = F.cross_entropy(logits.flatten(0, 1).float(), batch.labels.flatten(),
                           ignore_index=IGNORE)
    real = batch.labels != IGNORE
    correct = (logits.argmax(-1) == batch.labels) & real
    accuracy = correct.sum() / real.sum().clamp(min=1)
    return loss, {"loss": loss.detach(), "token_accuracy": accuracy.detach()}


@dataclass(frozen=True)
class NoiseConfig:
    """How much to corrupt: mask_ratio of tokens in Poisson(poisson_lambda) spans,
    delete_ratio of the rest deleted, sentences shuffled when sentence_end_ids is set."""

    mask_ratio: float = 0.3
    poisson_lambda: float = 3.0
    delete_ratio: float = 0.0
    sentence_end_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not (0 <= self.mask_ratio < 1 and 0 <= self.delete_ratio < 1):
            raise ParrotError("mask_ratio and delete_ratio must lie in [0, 1).")
        if self.poisson_lambda <= 0:
            raise ParrotError(f"poisson_lambda must be positive, got {self.poisson_lambda}.")


def span_lengths(budget: int, lam: float, generator: torch.Generator) -> list[int]:
    """Span lengths L_i ~ Poisson(lam), drawn until they cover `budget` tokens; the last
    is cut so that sum(L_i) == budget exactly. Zero-length spans are kept."""
    lengths: list[int] = []
    total = 0
    while total < budget:
        draws = torch.poisson(torch.full((16,), lam), generator=generator).long().tolist()
        for length in draws:
            length = min(length, budget - total)
            lengths.append(length)
            total += length
            if total >= budget:
                break
    return lengths


def mask_spans(ids: Sequence[int], ratio: float, lam: float, mask_id: int,
               generator: torch.Generator) -> list[int]:
    """Text infilling: replace spans covering round(ratio * n) tokens, one <mask> each.

    The n - m kept tokens leave m + 1 gaps (before, between, after them); each span goes
    into its own randomly chosen gap, so spans never merge and the output has exactly
    n - budget + spans tokens, `spans` of them masks. If there are more spans than gaps,
    the surplus lengths join the last chosen span.
    """
    n = len(ids)
    budget = round(ratio * n)
    if budget == 0:
        return list(ids)
    lengths = span_lengths(budget, lam, generator)
    gaps = n - budget + 1
    if len(lengths) > gaps:
        lengths = lengths[: gaps - 1] + [sum(lengths[gaps - 1:])]
    chosen = sorted(torch.randperm(gaps, generator=generator)[: len(lengths)].tolist())
    span_at = dict(zip(chosen, lengths, strict=True))
    out: list[int] = []
    i = 0  # index into ids
    for gap in range(gaps):
        if gap in span_at:
            out.append(mask_id)
            i += span_at[gap]
        if i < n:
            out.append(ids[i])
            i += 1
    return out


def delete_tokens(ids: Sequence[int], ratio: float, generator: torch.Generator) -> list[int]:
    """Remove round(ratio * n) tokens at random positions, keeping the others in order."""
    n = len(ids)
    drop = set(torch.randperm(n, generator=generator)[: round(ratio * n)].tolist())
    return [t for i, t in enumerate(ids) if i not in drop]


def shuffle_sentences(ids: Sequence[int], end_ids: Sequence[int],
                      generator: torch.Generator) -> list[int]:
    """Cut after every token in `end_ids` (a trailing partial sentence counts) and return
    the sentences in a random order."""
    sentences, current = [], []
    for t in ids:
        current.append(t)
        if t in end_ids:
            sentences.append(current)
            current = []
    if current:
        sentences.append(current)
    order = torch.randperm(len(sentences), generator=generator).tolist()
    return [t for k in order for t in sentences[k]]


def corrupt(ids: Sequence[int], noise: NoiseConfig, mask_id: int,
            generator: torch.Generator) -> list[int]:
    """BART's order: permute sentences, delete tokens, then infill-mask spans."""
    out = list(ids)
    if noise.sentence_end_ids:
        out = shuffle_sentences(out, noise.sentence_end_ids, generator)
    if noise.delete_ratio:
        out = delete_tokens(out, noise.delete_ratio, generator)
    return mask_spans(out, noise.mask_ratio, noise.poisson_lambda, mask_id, generator) \
        if out else [mask_id]


def denoise_batch(windows: torch.Tensor, noise: NoiseConfig, tokens: Seq2SeqTokens,
                  generator: torch.Generator) -> PairBatch:
    """Windows (B, L) of text ids -> a PairBatch: source = corrupt(x[:L-2]), target = the
    same x[:L-2] (the decoder input adds <s>, so inputs and sources both fit L-1 slots)."""
    if tokens.mask_id is None:
        raise ParrotError("Denoising needs a <mask> token in the tokenizer; train the "
                          "tokenizer with it (parrot seq2seq train adds it).")
    rows = windows[:, : max(1, windows.shape[1] - 2)].tolist()
    examples = [(corrupt(r, noise, tokens.mask_id, generator), r) for r in rows]
    return make_batch(examples, tokens)


EVAL_SEED = 1234  # validation corrupts the same way at every evaluation


def denoise(model: nn.Module, windows: torch.Tensor, *, tokens: Seq2SeqTokens,
            noise: NoiseConfig | None = None, generator: torch.Generator | None = None
            ) -> tuple[torch.Tensor, dict]:
    """The denoising objective on token windows (B, T+1) (the loop's batches). The runner
    binds the tokenizer's special ids with `bind_denoise`."""
    if not model.training or generator is None:
        generator = torch.Generator().manual_seed(EVAL_SEED)
    batch = denoise_batch(windows.cpu(), noise or NoiseConfig(), tokens, generator)
    return seq2seq_loss(model, batch.to(windows.device))


def bind_denoise(tokenizer) -> partial:
    """`denoise` with the tokenizer's special ids and sentence ends bound (sentence ends:
    tokens whose bytes end in . ! ? or a newline); ParrotError without a <mask> token."""
    tokens = tokens_from_specials(tokenizer.special_tokens)
    if tokens.mask_id is None:
        raise ParrotError("The denoise objective needs a <mask> token, and this tokenizer "
                          "has none; train without --tokenizer (a new one gets it).")
    specials = set(tokenizer.special_tokens.values())
    ends = tuple(i for i in range(tokenizer.vocab_size) if i not in specials
                 and tokenizer.token_bytes(i).endswith((b".", b"!", b"?", b"\n")))
    return partial(denoise, tokens=tokens, noise=NoiseConfig(sentence_end_ids=ends),
                   generator=torch.Generator().manual_seed(0))

