"""The Tokenizer API: round trips, special tokens, batches, save/load, errors."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizer_samples import SPECIALS, UNICODE_SAMPLE

from parrot.errors import ParrotError
from parrot.tokenizer import SpecialTokenError, Tokenizer

TRICKY = st.sampled_from(
    ["🦜", "👨‍👩‍👧", "e\u0301", "\u0301\u0301", "東京", "한국", "שלום", "\r\n", "\r", "\n\n",
     "   ", "\t \t", "\u00a0", "\u2003", "'s", "'LL", "123456", " the", "ﬁ", "\U0010fffd", "\x00"]
)

# Code points unassigned in this Python's Unicode tables ("Cn") are left out, and
# surrogates as `st.text()` leaves them out: `regex` (the reference path) and tiktoken's
# Rust regex (the fast path) ship different Unicode versions, so they disagree on whether
# a newly assigned letter such as U+323B0 is \p{L}.
ASSIGNED_CHARS = st.characters(exclude_categories=("Cn", "Cs"))
ASSIGNED = st.text(ASSIGNED_CHARS)


@settings(max_examples=300, deadline=None)
@given(ASSIGNED | st.lists(TRICKY | st.text(ASSIGNED_CHARS, max_size=3)).map("".join))
def test_decode_inverts_encode_for_any_unicode(trained, text):
    ids = trained.encode(text)
    assert trained.decode(ids) == text
    assert trained.encode_reference(text) == ids


@pytest.mark.parametrize("pattern", ["gpt2", "cl100k", "llama3"])
def test_round_trip_for_each_named_pattern(train_docs, pattern):
    tok = Tokenizer.train(train_docs[:40], 700, pattern=pattern)
    assert tok.decode(tok.encode(UNICODE_SAMPLE)) == UNICODE_SAMPLE
    assert tok.encode(UNICODE_SAMPLE) == tok.encode_reference(UNICODE_SAMPLE)


def test_vocab_256_without_specials_is_one_token_per_byte():
    tok = Tokenizer.train(["hello hello hello"], vocab_size=256)
    text = "héllo 🦜"
    assert tok.parts.merges == []
    assert tok.encode(text) == list(text.encode("utf-8"))
    assert tok.vocab_size == 256


def test_special_tokens_get_the_last_ids_and_name_bos_eos(trained):
    assert trained.vocab_size == 2048
    assert list(trained.special_tokens) == SPECIALS
    assert sorted(trained.special_tokens.values()) == list(range(2048 - len(SPECIALS), 2048))
    assert trained.eos_id == trained.special_tokens["<|endoftext|>"]
    assert trained.bos_id is None


def test_special_token_in_text_is_refused_unless_allowed(trained):
    text = "a<|endoftext|>b"
    with pytest.raises(SpecialTokenError, match="<\\|endoftext\\|>"):
        trained.encode(text)
    eot = trained.special_tokens["<|endoftext|>"]
    assert eot in trained.encode(text, allowed_special="all")
    assert eot in trained.encode(text, allowed_special={"<|endoftext|>"})
    with pytest.raises(SpecialTokenError):  # allowing another special does not help
        trained.encode(text, allowed_special={"[MASK]"})


def test_special_token_as_plain_text_when_not_disallowed(trained):
    text = "a<|endoftext|>b"
    ids = trained.encode(text, disallowed_special=())
    assert not set(ids) & set(trained.special_tokens.values())
    assert trained.decode(ids) == text


def test_merges_never_produce_special_tokens(trained, held_out_text):
    text = held_out_text[:100_000] + "".join(SPECIALS) * 3
    ids = trained.encode(text, disallowed_special=())
    assert not set(ids) & set(trained.special_tokens.values())


def test_adjacent_specials_and_decode_of_specials(trained):
    text = "<|im_start|>user\nhi<|im_end|><|endoftext|>"
    ids = trained.encode(text, allowed_special="all")
    assert ids[0] == trained.special_tokens["<|im_start|>"]
    assert ids[-2:] == [trained.special_tokens["<|im_end|>"], trained.special_tokens["<|endoftext|>"]]
    assert trained.decode(ids) == text
    assert trained.encode_reference(text, allowed_special="all") == ids


def test_encode_batch_equals_encode_one_by_one(trained, held_out_text):
    texts = [held_out_text[i : i + 5000] for i in range(0, 200_000, 5000)]
    assert trained.encode_batch(texts) == [trained.encode(t) for t in texts]


def test_decode_replaces_invalid_utf8(trained):
    ids = trained.encode("é")  # two bytes, c3 a9
    assert trained.decode_bytes(ids) == "é".encode()
    lone = [i for i in range(256) if trained.token_bytes(i) == b"\xc3"]
    assert trained.decode(lone) == "\ufffd"


def test_decode_of_unknown_id_is_a_clear_error(trained):
    with pytest.raises(ParrotError, match="outside the vocabulary"):
        trained.decode([1, 99_999])


def test_save_then_load_gives_the_same_tokenizer(trained, tmp_path, held_out_text):
    trained.save(tmp_path)
    again = Tokenizer.load(tmp_path / "tokenizer.json")
    assert again.parts == trained.parts
    assert again.special_tokens == trained.special_tokens and again.eos_id == trained.eos_id
    text = held_out_text[:50_000]
    assert again.encode(text) == trained.encode(text)


def test_vocab_smaller_than_bytes_plus_specials_is_refused():
    with pytest.raises(ParrotError, match="at least 256 .* 2 special tokens = 258"):
        Tokenizer.train(["hello"], vocab_size=257, special_tokens=["<a>", "<b>"])


def test_unknown_pattern_is_refused():
    with pytest.raises(ParrotError, match="not a known name"):
        Tokenizer.train(["hello"], vocab_size=300, pattern="gpt3(")


def test_unknown_allowed_special_is_refused(trained):
    with pytest.raises(ParrotError, match="not special tokens"):
        trained.encode("x", allowed_special={"<nope>"})


def test_bos_and_eos_come_from_a_tokenizer_config_beside_the_file(tmp_path):
    tok = Tokenizer.train(["hello world"], 260, special_tokens=["<s>", "</s>", "<|im_end|>"])
    tok.save(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps({"bos_token": {"content": "<s>"}, "eos_token": "<|im_end|>"})
    )
    loaded = Tokenizer.load(tmp_path)
    assert tok.bos_id == loaded.bos_id == tok.special_tokens["<s>"]
    assert tok.eos_id == tok.special_tokens["</s>"]
    assert loaded.eos_id == tok.special_tokens["<|im_end|>"]
