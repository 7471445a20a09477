"""The engine drives an encoder-decoder: the source is encoded once per request, the
decoder is cached, and requests join and leave a running batch as with a decoder.

The reference is `generate_recompute`: greedy decoding with no cache at all."""

from __future__ import annotations

import pytest
import torch
from infer_helpers import generate_recompute, pad_batch

from parrot.data.pairs import Seq2SeqTokens
from parrot.errors import ParrotError
from parrot.infer import Engine, SamplingParams
from parrot.model import EncoderDecoder, ModelConfig
from parrot.tokenizer import Tokenizer
from parrot.training.seq2seq import exact_match, generate_targets

TOKENS = Seq2SeqTokens(start_id=1, eos_id=2, pad_id=0)
SOURCES = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14], [20, 21, 22, 23, 24, 25, 26]]


class IdTokenizer:
    """Ids as text (one character per id) with the seq2seq specials of `TOKENS`."""

    vocab_size = 32
    eos_id, bos_id = 2, None
    special_tokens = {"<pad>": 0, "<s>": 1, "</s>": 2}

    def encode(self, text, allowed_special="none"):
        return [ord(c) - 64 for c in text]

    def token_bytes(self, token_id: int) -> bytes:
        return bytes([64 + token_id])

    def decode(self, ids):
        return "".join(chr(64 + i) for i in ids)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def model(seed: int = 0, **changes) -> EncoderDecoder:
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=32, context_length=32, d_model=32, n_layers=2,
                      encoder_layers=2, n_heads=4, **changes)
    return EncoderDecoder(cfg).eval()


def engine_ids(m: EncoderDecoder, sources, params: SamplingParams, max_batch: int = 4):
    engine = Engine(m, IdTokenizer(), max_batch=max_batch, max_len=16)
    return [c.token_ids for c in engine.generate_batch(sources, params)]


@pytest.mark.parametrize("changes", [{}, dict(norm_placement="post", positions="rope",
                                              n_kv_heads=2)])
def test_engine_greedy_equals_recompute_with_requests_joining_mid_batch(changes):
    m = model(**changes)
    expected = generate_recompute(m, SOURCES, TOKENS, 10)
    engine = Engine(m, IdTokenizer(), max_batch=2, max_len=16)
    params = SamplingParams(temperature=0.0, max_new_tokens=10, ignore_eos=True)
    ids = [engine.submit(s, params, collect=True) for s in SOURCES]   # 4 requests, 2 slots
    while engine.has_work():
        engine.step()
    got = [engine.result(i).token_ids for i in ids]
    assert [row[:len(want)] for row, want in zip(got, expected, strict=True)] == expected


def test_the_encoder_runs_once_per_request(monkeypatch):
    m = model()
    calls = []
    original = m.encode
    monkeypatch.setattr(m, "encode", lambda src, mask=None: calls.append(src.shape)
                        or original(src, mask))
    engine = Engine(m, IdTokenizer(), max_batch=4, max_len=16)
    engine.generate_batch(SOURCES, SamplingParams(temperature=0.0, max_new_tokens=8,
                                                  ignore_eos=True))
    assert [shape[1] for shape in calls] == [len(s) for s in SOURCES]


def test_a_tokenizer_without_a_start_token_is_one_clear_error():
    class NoStart(IdTokenizer):
        special_tokens = {"<pad>": 0, "</s>": 2}

    with pytest.raises(ParrotError, match="start the decoder"):
        Engine(model(), NoStart(), max_batch=1, max_len=16)


def test_each_cached_step_gives_the_recomputed_logits():
    m = model()
    src, mask = pad_batch(SOURCES, TOKENS.pad_id)
    with torch.no_grad():
        memory = m.encode(src, mask)
        cache = m.new_cache(memory, mask, max_len=10)
        ys = torch.full((len(SOURCES), 1), TOKENS.start_id)
        for t in range(8):
            positions = torch.full((len(SOURCES), 1), t)
            step = m.decode(ys[:, -1:], None, positions=positions, cache=cache)
            full = m.decode(ys, memory, mask)
            torch.testing.assert_close(step[:, -1], full[:, -1], atol=1e-5, rtol=1e-5)
            ys = torch.cat([ys, full[:, -1].argmax(-1, keepdim=True)], dim=1)


def test_a_row_stops_at_its_end_token():
    m = model()
    with torch.no_grad():  # make </s> the most likely token everywhere
        m.lm_head.weight.zero_()
    bias = torch.zeros(32)
    bias[TOKENS.eos_id] = 10.0
    m.lm_head.bias = torch.nn.Parameter(bias)
    engine = Engine(m, IdTokenizer(), max_batch=4, max_len=16)
    for c in engine.generate_batch(SOURCES, SamplingParams(temperature=0.0)):
        assert (c.token_ids, c.text, c.stop_reason) == ([TOKENS.eos_id], "", TOKENS.eos_id)


def test_sampling_with_a_seed_repeats_and_differs_across_seeds():
    m = model()
    params = SamplingParams(temperature=1.5, seed=3, max_new_tokens=10, ignore_eos=True)
    first = engine_ids(m, SOURCES, params)
    assert first == engine_ids(m, SOURCES, params)
    others = [engine_ids(m, SOURCES, params.replace(seed=s)) for s in range(4, 8)]
    assert any(o != first for o in others)


def test_batched_generation_equals_one_request_at_a_time():
    m = model(1)
    params = SamplingParams(temperature=0.0, max_new_tokens=9)
    together = engine_ids(m, SOURCES, params)
    alone = [engine_ids(m, [s], params, max_batch=1)[0] for s in SOURCES]
    assert together == alone


def test_text_in_text_out_and_exact_match():
    tokenizer = Tokenizer.train([], 260, special_tokens=["<pad>", "<s>", "</s>", "<mask>"])
    tokens = Seq2SeqTokens(start_id=tokenizer.special_tokens["<s>"],
                           eos_id=tokenizer.special_tokens["</s>"],
                           pad_id=tokenizer.special_tokens["<pad>"])
    torch.manual_seed(0)
    m = EncoderDecoder(ModelConfig(vocab_size=260, context_length=32, d_model=32, n_layers=1,
                                   encoder_layers=1, n_heads=4)).eval()
    outputs = generate_targets(m, tokenizer, tokens, ["hello", "hi"], batch_size=1)
    assert len(outputs) == 2 and all(isinstance(o, str) for o in outputs)
    assert exact_match(m, tokenizer, ["hello", "hi"], outputs, tokens) == 1.0


def test_empty_source_is_refused():
    with pytest.raises(ParrotError, match="empty"):
        Engine(model(), IdTokenizer(), max_batch=1, max_len=16).submit([], SamplingParams())
