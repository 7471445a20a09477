"""Generation from an encoder-decoder: encode once, then decode token by token with a cache.

    memory = encode(source)                       once per batch of requests
    cache  = cross k/v of memory (every layer) + an empty decoder KVCache
    y_0 = start;  y_{t+1} ~ p(. | y_0..y_t, memory)   until </s> or max_new_tokens

Each step feeds only the newest token at its position; the decoder's self-attention reads
earlier tokens from the KVCache and the memory's keys/values from the cache. Rows of a
batch step together; a finished row keeps stepping on padding and its output is cut at
its end-of-sequence token. Token choice uses the pure functions of `infer/sampling.py`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from parrot.data.pairs import Seq2SeqTokens
from parrot.errors import ParrotError
from parrot.infer.sampling import SamplingParams, sample
from parrot.model import EncoderDecoder

__all__ = ["Seq2SeqTokens", "exact_match", "generate_ids", "generate_recompute", "generate_text",
           "pad_batch"]


def pad_batch(rows: Sequence[Sequence[int]], pad_id: int,
              device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists into (B, S) long ids and a (B, S) bool mask (True = real token)."""
    if not rows or any(len(r) == 0 for r in rows):
        raise ParrotError("Every source must have at least one token; give non-empty text.")
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros(len(rows), width, dtype=torch.bool, device=device)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(list(row), dtype=torch.long)
        mask[i, : len(row)] = True
    return ids, mask


@torch.no_grad()
def generate_ids(model: EncoderDecoder, sources: Sequence[Sequence[int]],
                 tokens: Seq2SeqTokens, params: SamplingParams | None = None) -> list[list[int]]:
    """Generate one target per source (ids without the start and end tokens).

    params: temperature 0 (the default here) is greedy; `params.seed` makes sampling
    repeatable; `params.max_new_tokens` bounds each target.
    """
    if not isinstance(model, EncoderDecoder):
        raise ParrotError("This model is decoder-only; seq2seq generation needs an "
                          "encoder-decoder run (train one with parrot seq2seq train).")
    params = params or SamplingParams(temperature=0.0)
    device = next(model.parameters()).device
    src, mask = pad_batch(sources, tokens.pad_id, device)
    max_new = min(params.max_new_tokens, model.config.context_length)
    memory = model.encode(src, mask)                                   # (B, S, d), once
    cache = model.new_cache(memory, mask, max_new)
    generator = None
    if params.seed is not None:
        generator = torch.Generator(device=device).manual_seed(params.seed)
    B = src.shape[0]
    step = torch.full((B, 1), tokens.start_id, dtype=torch.long, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    out: list[torch.Tensor] = []
    for t in range(max_new):
        positions = torch.full((B, 1), t, dtype=torch.long, device=device)
        logits = model.decode(step, None, positions=positions, cache=cache)[:, -1]
        chosen = sample(logits, params, generator)                      # (B,)
        chosen = torch.where(done, torch.full_like(chosen, tokens.pad_id), chosen)
        out.append(chosen)
        done |= chosen == tokens.eos_id
        if bool(done.all()):
            break
        step = chosen[:, None]
    return [_until_eos(row, tokens.eos_id) for row in torch.stack(out, 1).tolist()]


def _until_eos(row: list[int], eos_id: int) -> list[int]:
    return row[: row.index(eos_id)] if eos_id in row else row


@torch.no_grad()
def generate_recompute(model: EncoderDecoder, sources: Sequence[Sequence[int]],
                       tokens: Seq2SeqTokens, max_new_tokens: int) -> list[list[int]]:
    """Greedy decoding without any cache (the whole prefix re-run each step): the
    reference the cached path is tested against."""
    src, mask = pad_batch(sources, tokens.pad_id)
    memory = model.encode(src, mask)
    ys = torch.full((src.shape[0], 1), tokens.start_id, dtype=torch.long)
    for _ in range(max_new_tokens):
        logits = model.decode(ys, memory, mask)[:, -1]
        ys = torch.cat([ys, logits.argmax(-1, keepdim=True)], dim=1)
    return [_until_eos(row[1:], tokens.eos_id) for row in ys.tolist()]


def generate_text(model: EncoderDecoder, tokenizer, texts: Sequence[str],
                  tokens: Seq2SeqTokens, params: SamplingParams | None = None,
                  batch_size: int = 64) -> list[str]:
    """Texts in, texts out, in batches of `batch_size` requests."""
    results: list[str] = []
    for i in range(0, len(texts), batch_size):
        chunk = [tokenizer.encode(t) for t in texts[i : i + batch_size]]
        results += [tokenizer.decode(ids) for ids in generate_ids(model, chunk, tokens, params)]
    return results


def exact_match(model: EncoderDecoder, tokenizer, sources: Sequence[str],
                targets: Sequence[str], tokens: Seq2SeqTokens,
                params: SamplingParams | None = None, batch_size: int = 64) -> float:
    """The fraction of sources whose generated text equals the target exactly."""
    if not sources:
        return 0.0
    outputs = generate_text(model, tokenizer, sources, tokens, params, batch_size)
    return sum(o == t for o, t in zip(outputs, targets, strict=True)) / len(sources)
