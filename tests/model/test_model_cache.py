"""Cached decoding equals a full recompute, for every position variant and for GQA."""

from __future__ import annotations

import pytest
import torch

from parrot.errors import ParrotError
from parrot.model import AttentionCapture, KVCache, ModelConfig, Transformer

SMALL = dict(vocab_size=40, context_length=24, d_model=32, n_layers=2, n_heads=4)
VARIANTS = [
    dict(positions="learned"), dict(positions="sinusoidal"), dict(positions="rope"),
    dict(positions="alibi"), dict(positions="none"),
    dict(positions="rope", n_kv_heads=2), dict(positions="rope", n_kv_heads=1),
    dict(positions="alibi", n_kv_heads=2, norm="rmsnorm", mlp="swiglu", bias=False),
]
TOL = 1e-5


def build(**changes) -> Transformer:
    torch.manual_seed(0)
    return Transformer(ModelConfig(**{**SMALL, **changes})).eval()


def full_last_logits(model: Transformer, sequence: list[int]) -> torch.Tensor:
    """Logits of the last position, recomputed from scratch without a cache."""
    return model(torch.tensor([sequence]))[0, -1]


def assert_close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert float((a - b).abs().max()) < TOL


def ids(changes: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in changes.items())


@pytest.mark.parametrize("changes", VARIANTS, ids=ids)
@pytest.mark.parametrize("capture", [False, True])
@torch.no_grad()
def test_single_sequence_decode_equals_full_recompute(changes, capture):
    model = build(**changes)
    sequence = [3, 17, 5, 9, 30]
    cache = KVCache(model.config, batch_size=1, max_len=16)
    logits = model(torch.tensor([sequence]), cache=cache)              # prefill
    assert_close(logits[0, -1], full_last_logits(model, sequence))
    for _ in range(8):
        sequence.append(int(logits[0, -1].argmax()))
        position = torch.tensor([[len(sequence) - 1]])
        logits = model(torch.tensor([sequence[-1:]]), positions=position, cache=cache,
                       capture=AttentionCapture() if capture else None)
        assert_close(logits[0, -1], full_last_logits(model, sequence))


def length_view(cache: KVCache, length: int) -> KVCache:
    """Slots 0..length-1 of every row, writing through to `cache` (what the engine passes)."""
    return KVCache(cache.config, cache.batch_size, length,
                   _tensors=(cache.keys[:, :, :, :length], cache.values[:, :, :, :length]))


@pytest.mark.parametrize("changes", VARIANTS, ids=ids)
@torch.no_grad()
def test_decode_through_views_cut_to_the_needed_length_equals_full_recompute(changes):
    """The model attends over exactly the cache it is given: a view of slots 0..p of a
    longer cache gives the logits of a full recompute, and writes land in the cache."""
    model = build(**changes)
    sequence = [3, 17, 5, 9, 30]
    cache = KVCache(model.config, batch_size=1, max_len=20)
    logits = model(torch.tensor([sequence]), cache=length_view(cache, len(sequence)))
    assert_close(logits[0, -1], full_last_logits(model, sequence))
    for _ in range(6):
        sequence.append(int(logits[0, -1].argmax()))
        position = torch.tensor([[len(sequence) - 1]])
        view = length_view(cache, len(sequence) + 2)  # a little longer: the rest is masked
        logits = model(torch.tensor([sequence[-1:]]), positions=position, cache=view)
        assert_close(logits[0, -1], full_last_logits(model, sequence))
    assert float(cache.keys[:, :, :, len(sequence) - 1].abs().sum()) > 0
    assert float(cache.keys[:, :, :, len(sequence):].abs().sum()) == 0


@pytest.mark.parametrize("changes", VARIANTS, ids=ids)
@torch.no_grad()
def test_ragged_right_padded_batch_decode_equals_full_recompute(changes):
    model = build(**changes)
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8, 9], [10, 11, 12, 13]]
    width = max(map(len, prompts))
    padded = torch.tensor([p + [0] * (width - len(p)) for p in prompts])
    cache = KVCache(model.config, batch_size=3, max_len=20)
    logits = model(padded, cache=cache)                                 # one batched prefill
    last = torch.stack([logits[b, len(p) - 1] for b, p in enumerate(prompts)])
    for _ in range(6):
        for b, p in enumerate(prompts):
            assert_close(last[b], full_last_logits(model, p))
            p.append(int(last[b].argmax()))
        # Each row writes its new token at its own position, over its padding.
        positions = torch.tensor([[len(p) - 1] for p in prompts])
        tokens = torch.tensor([[p[-1]] for p in prompts])
        last = model(tokens, positions=positions, cache=cache)[:, -1]


@pytest.mark.parametrize("changes", [VARIANTS[0], VARIANTS[3], VARIANTS[5]], ids=ids)
@torch.no_grad()
def test_prefill_of_one_row_through_a_rows_view_keeps_the_other_rows(changes):
    model = build(**changes)
    seqs = [[1, 2, 3, 4], [5, 6], [7, 8, 9]]
    cache = KVCache(model.config, batch_size=3, max_len=20)
    last = []
    for b, s in enumerate(seqs):                                        # per-row prefill
        last.append(model(torch.tensor([s]), cache=cache.rows(b, b + 1))[0, -1])
    for step in range(5):
        if step == 2:  # row 1 finished: a new request takes its slot, starting at 0
            seqs[1] = [11, 12, 13, 14, 15, 16, 17]
            last[1] = model(torch.tensor([seqs[1]]), cache=cache.rows(1, 2))[0, -1]
        if step == 3:  # a shorter request over row 0's longer, now stale, history
            seqs[0] = [18, 19]
            last[0] = model(torch.tensor([seqs[0]]), cache=cache.rows(0, 1))[0, -1]
        for b, s in enumerate(seqs):
            assert_close(last[b], full_last_logits(model, s))
            s.append(int(last[b].argmax()))
        positions = torch.tensor([[len(s) - 1] for s in seqs])
        out = model(torch.tensor([[s[-1]] for s in seqs]), positions=positions, cache=cache)
        last = list(out[:, -1])


def test_rows_view_writes_into_the_parent_cache():
    cfg = ModelConfig(**SMALL)
    cache = KVCache(cfg, batch_size=3, max_len=8)
    view = cache.rows(1, 3)
    view.update(0, torch.ones(2, 4, 1, 8), torch.ones(2, 4, 1, 8), torch.tensor([[2], [5]]))
    assert view.batch_size == 2 and view.max_len == 8
    assert float(cache.keys[0, 1, :, 2].min()) == 1 and float(cache.keys[0, 2, :, 5].min()) == 1
    assert float(cache.keys.sum()) == 2 * 4 * 8
    assert cache.keys.shape == (2, 3, 4, 8, 8)


def test_cache_misuse_raises_clear_errors():
    model = build()
    cache = KVCache(model.config, batch_size=2, max_len=8)
    with pytest.raises(ParrotError, match="holds 2 rows"):
        model(torch.zeros(1, 3, dtype=torch.long), cache=cache)
    with pytest.raises(ParrotError, match="outside"):
        cache.rows(1, 3)
    with pytest.raises(ParrotError, match="positive"):
        KVCache(model.config, batch_size=0, max_len=8)


def test_cache_dtype_follows_the_request():
    cache = KVCache(ModelConfig(**SMALL), 1, 4, dtype=torch.bfloat16)
    assert cache.keys.dtype == torch.bfloat16 and cache.values.dtype == torch.bfloat16
