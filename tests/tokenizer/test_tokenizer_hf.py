"""Parity with Hugging Face `tokenizers` (both directions) and tiktoken, and compression."""

import json

import pytest
import tokenizers
from tokenizer_samples import SPECIALS
from tokenizers import Regex, decoders, models, pre_tokenizers, trainers

from parrot.errors import ParrotError
from parrot.tokenizer import PATTERNS, Tokenizer
from parrot.tokenizer.fast import TiktokenEncoder


def hf_train(docs, vocab_size, pattern="gpt2", specials=()):
    """A tokenizer built and trained by `tokenizers` itself, with the same split pattern."""
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PATTERNS[pattern]), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(specials), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(docs, trainer)
    return tok


@pytest.fixture(scope="module")
def hf_trained(train_docs):
    return hf_train(train_docs, 2048, specials=SPECIALS[:2])


def test_tokenizers_library_encodes_1mb_like_our_saved_file(trained, tmp_path, held_out_text):
    trained.save(tmp_path)
    theirs = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    text = held_out_text + "<|im_start|>user\nhello<|im_end|>"
    ours = trained.encode(text, allowed_special="all")
    assert len(text.encode()) > 1_000_000
    assert theirs.encode(text, add_special_tokens=False).ids == ours
    assert theirs.decode(ours, skip_special_tokens=False) == text


def test_we_encode_1mb_like_a_tokenizers_trained_file(hf_trained, tmp_path, held_out_text):
    hf_trained.save(str(tmp_path / "tokenizer.json"))
    ours = Tokenizer.load(tmp_path)
    text = held_out_text + "<|endoftext|> tail"
    expected = hf_trained.encode(text, add_special_tokens=False).ids
    assert ours.encode(text, allowed_special="all") == expected
    assert ours.decode(expected) == text
    assert ours.special_tokens == {"<|endoftext|>": 0, "<|im_start|>": 1}


def test_cl100k_pattern_file_from_tokenizers_matches(train_docs, tmp_path, held_out_text):
    theirs = hf_train(train_docs[:120], 1000, pattern="cl100k")
    theirs.save(str(tmp_path / "tokenizer.json"))
    text = held_out_text[:300_000]
    assert Tokenizer.load(tmp_path).encode(text) == theirs.encode(text).ids


def test_gpt2_style_bytelevel_regex_file_loads_as_gpt2_pattern(train_docs, tmp_path):
    theirs = tokenizers.Tokenizer(models.BPE())
    theirs.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(vocab_size=600, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    theirs.train_from_iterator(train_docs[:50], trainer)
    theirs.save(str(tmp_path / "tokenizer.json"))
    ours = Tokenizer.load(tmp_path / "tokenizer.json")
    text = "\n".join(train_docs[50:80])
    assert ours.pattern == PATTERNS["gpt2"]
    assert ours.encode(text) == theirs.encode(text).ids


def test_fast_path_agrees_with_reference_encoder_on_1mb(trained, held_out_text):
    assert trained.fast_path == "tiktoken"
    assert trained.encode(held_out_text) == trained.encode_reference(held_out_text)


def _conflicting_json(tmp_path):
    """Merges b+c, a+b, ab+c: 'abc' is made only from ab+c, yet tiktoken's rule (merged-bytes
    rank) would fuse a+bc into it too, which learned-merge order never does."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    vocab.update({"bc": 256, "ab": 257, "abc": 258})
    tok = tokenizers.Tokenizer(models.BPE(vocab, [("b", "c"), ("a", "b"), ("ab", "c")]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.save(str(tmp_path / "tokenizer.json"))
    return tok


def test_vocabulary_where_tiktoken_order_differs_falls_back(tmp_path):
    theirs = _conflicting_json(tmp_path)
    ours = Tokenizer.load(tmp_path)
    text = "abc ab bc abcabc cab"
    assert ours.fast_path == "cached-python"
    assert ours.encode(text) == theirs.encode(text).ids == ours.encode_reference(text)
    wrong = TiktokenEncoder(ours._tables, ours.parts.token_bytes).encode(text, frozenset())
    assert wrong != ours.encode(text)  # the check is needed: tiktoken alone would differ


@pytest.mark.parametrize("pattern", ["gpt2", "cl100k"])
def test_compression_within_2_percent_of_tokenizers_trainer(corpus, pattern):
    train, held = corpus[::2], "\n".join(corpus[1::2])
    ours = Tokenizer.train(train, 2048, pattern=pattern)
    theirs = hf_train(train, 2048, pattern=pattern)
    size = len(held.encode())
    ours_bpt = size / len(ours.encode(held))
    theirs_bpt = size / len(theirs.encode(held).ids)
    assert ours.vocab_size == theirs.get_vocab_size() == 2048
    assert abs(ours_bpt / theirs_bpt - 1) < 0.02, (ours_bpt, theirs_bpt)


BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}


def _write(tmp_path, data) -> str:
    path = tmp_path / "tokenizer.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


@pytest.mark.parametrize("kind", ["WordPiece", "Unigram", "WordLevel"])
def test_foreign_model_kinds_are_refused_with_a_clear_message(tmp_path, kind):
    path = _write(tmp_path, {"model": {"type": kind, "vocab": {}}})
    with pytest.raises(ParrotError, match=f"holds a {kind} tokenizer model.*only byte-level BPE"):
        Tokenizer.load(path)


def test_real_wordpiece_file_is_refused(tmp_path):
    wp = tokenizers.Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    wp.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(ParrotError, match="WordPiece"):
        Tokenizer.load(tmp_path)


@pytest.mark.parametrize("content, message", [
    ("{not json", "not a readable tokenizer.json"),
    ({"model": {"type": "BPE", "vocab": {"a": 0}}}, "corrupt"),
    ({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": [["a", "b"]]},
      "pre_tokenizer": BYTE_LEVEL}, "whose tokens are missing"),
    ({"model": {"type": "BPE", "vocab": {"\u2581a": 0}, "merges": []}, "pre_tokenizer": BYTE_LEVEL},
     "not in byte-level form"),
    ({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}, "pre-tokenizer"),
    ([1, 2], "unknown tokenizer model"),
])
def test_corrupt_tokenizer_json_is_refused(tmp_path, content, message):
    with pytest.raises(ParrotError, match=message):
        Tokenizer.load(_write(tmp_path, content))


def test_missing_tokenizer_is_refused(tmp_path):
    with pytest.raises(ParrotError, match="No tokenizer found"):
        Tokenizer.load(tmp_path / "nowhere")
