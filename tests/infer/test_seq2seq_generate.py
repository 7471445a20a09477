"""Seq2seq generation: cached decoding equals recompute, the encoder runs once per batch."""

from __future__ import annotations

import pytest
import torch

from parrot.errors import ParrotError
from parrot.infer.sampling import SamplingParams
from parrot.infer.seq2seq import (
    Seq2SeqTokens,
    exact_match,
    generate_ids,
    generate_recompute,
    generate_text,
    pad_batch,
)
from parrot.model import EncoderDecoder, ModelConfig, Transformer
from parrot.tokenizer import Tokenizer

TOKENS = Seq2SeqTokens(start_id=1, eos_id=2, pad_id=0)
SOURCES = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]


@pytest.fixture(autouse=True)
def _one_thread():
    """These tensors are tiny: one thread skips thread hand-offs (slow on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def model(seed: int = 0, **changes) -> EncoderDecoder:
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=32, context_length=32, d_model=32, n_layers=2,
                      encoder_layers=2, n_heads=4, **changes)
    return EncoderDecoder(cfg).eval()


@pytest.mark.parametrize("changes", [{}, dict(norm_placement="post", positions="rope",
                                              n_kv_heads=2)])
def test_cached_greedy_generation_equals_recompute(changes):
    m = model(**changes)
    params = SamplingParams(temperature=0.0, max_new_tokens=12, ignore_eos=True)
    cached = generate_ids(m, SOURCES, TOKENS, params)
    assert cached == generate_recompute(m, SOURCES, TOKENS, 12)
    assert all(len(row) <= 12 for row in cached)


def test_each_cached_step_gives_the_recomputed_logits():
    m = model()
    src, mask = pad_batch(SOURCES, TOKENS.pad_id)
    with torch.no_grad():
        memory = m.encode(src, mask)
        cache = m.new_cache(memory, mask, max_len=10)
        ys = torch.full((3, 1), TOKENS.start_id)
        for t in range(8):
            step = m.decode(ys[:, -1:], None, positions=torch.full((3, 1), t), cache=cache)
            full = m.decode(ys, memory, mask)
            torch.testing.assert_close(step[:, -1], full[:, -1], atol=1e-5, rtol=1e-5)
            ys = torch.cat([ys, full[:, -1].argmax(-1, keepdim=True)], dim=1)


def test_the_encoder_runs_once_per_batch_of_requests(monkeypatch):
    m = model()
    calls = []
    original = m.encode

    def counting(src, src_mask=None):
        calls.append(src.shape)
        return original(src, src_mask)

    monkeypatch.setattr(m, "encode", counting)
    generate_ids(m, SOURCES, TOKENS, SamplingParams(temperature=0.0, max_new_tokens=10))
    assert calls == [torch.Size([3, 5])]


def test_a_row_stops_at_its_end_token():
    m = model()
    with torch.no_grad():  # make </s> the most likely token everywhere
        m.lm_head.weight.zero_()
        m.lm_head.bias = None
    bias = torch.zeros(32)
    bias[TOKENS.eos_id] = 10.0
    m.lm_head.bias = torch.nn.Parameter(bias)
    assert generate_ids(m, SOURCES, TOKENS) == [[], [], []]


def test_sampling_with_a_seed_repeats_and_differs_across_seeds():
    m = model()
    params = SamplingParams(temperature=1.5, seed=3, max_new_tokens=10, ignore_eos=True)
    first = generate_ids(m, SOURCES, TOKENS, params)
    assert first == generate_ids(m, SOURCES, TOKENS, params)
    others = [generate_ids(m, SOURCES, TOKENS, params.replace(seed=s)) for s in range(4, 8)]
    assert any(o != first for o in others)


def test_batched_generation_equals_one_request_at_a_time():
    m = model(1)
    params = SamplingParams(temperature=0.0, max_new_tokens=9)
    together = generate_ids(m, SOURCES, TOKENS, params)
    alone = [generate_ids(m, [s], TOKENS, params)[0] for s in SOURCES]
    assert together == alone


def test_text_in_text_out_and_exact_match():
    tokenizer = Tokenizer.train([], 260, special_tokens=["<pad>", "<s>", "</s>", "<mask>"])
    tokens = Seq2SeqTokens(start_id=tokenizer.special_tokens["<s>"],
                           eos_id=tokenizer.special_tokens["</s>"],
                           pad_id=tokenizer.special_tokens["<pad>"])
    torch.manual_seed(0)
    m = EncoderDecoder(ModelConfig(vocab_size=260, context_length=32, d_model=32, n_layers=1,
                                   encoder_layers=1, n_heads=4)).eval()
    params = SamplingParams(temperature=0.0, max_new_tokens=5)
    outputs = generate_text(m, tokenizer, ["hello", "hi"], tokens, params, batch_size=1)
    assert len(outputs) == 2 and all(isinstance(o, str) for o in outputs)
    assert exact_match(m, tokenizer, ["hello", "hi"], outputs, tokens, params) == 1.0


def test_a_decoder_only_model_is_refused():
    decoder_only = Transformer(ModelConfig(vocab_size=32, d_model=32, n_layers=1, n_heads=4))
    with pytest.raises(ParrotError, match="decoder-only"):
        generate_ids(decoder_only, SOURCES, TOKENS)


def test_empty_source_is_refused():
    with pytest.raises(ParrotError, match="at least one token"):
        generate_ids(model(), [[5], []], TOKENS)
