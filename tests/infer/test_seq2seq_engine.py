"""The engine drives an encoder-decoder: the source is encoded once per request, the
decoder is cached, and requests join and leave a running batch as with a decoder."""

from __future__ import annotations

import pytest
import torch

from parrot.errors import ParrotError
from parrot.infer import Engine, SamplingParams
from parrot.infer.seq2seq import Seq2SeqTokens, generate_recompute
from parrot.model import EncoderDecoder, ModelConfig

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


def model(**changes) -> EncoderDecoder:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=32, context_length=32, d_model=32, n_layers=2,
                      encoder_layers=2, n_heads=4, **changes)
    return EncoderDecoder(cfg).eval()


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
    got = [engine._finished.pop(i).token_ids for i in ids]
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
