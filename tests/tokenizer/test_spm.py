"""SentencePiece-style BPE: the pure functions against naive references, and parity with
Hugging Face `tokenizers` on a locally built byte-fallback tokenizer (nothing downloaded)."""

from __future__ import annotations

import json
from itertools import pairwise

import pytest
import tokenizers
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import AddedToken, decoders, models, normalizers, pre_tokenizers, trainers

from parrot.errors import ParrotError
from parrot.infer.streaming import IncrementalDetokenizer
from parrot.tokenizer import SentencePieceParts, Tokenizer
from parrot.tokenizer.bpe import encode_chunk
from parrot.tokenizer.spm import (
    SentencePieceEncoder,
    fuse_by_rank,
    fuse_by_score,
    piece_bytes,
    score_places,
    split_leftmost_longest,
    split_longest_first,
    split_words,
    word_cut_blockers,
)
from parrot.tokenizer.spm_json import merges_from_scores

SPECIALS = ["<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"]
USER_DEFINED = ["\n", "\n\n", "\n\n\n", "  ", "   ", "\t", "<b>"]
NORMALIZED_USER = ["▁▁▁▁", "<i>", "x y", "<b"]


# --- the pure functions -------------------------------------------------------------------
def naive_fuse_by_score(text: str, scores: dict[str, float]) -> list[str]:
    """The score rule, spelled out: scan every adjacent pair, fuse the best, repeat."""
    symbols = list(text)
    while True:
        best = None
        for k, (a, b) in enumerate(pairwise(symbols)):
            if a + b in scores and (best is None or scores[a + b] > best[0]):
                best = (scores[a + b], k)  # strict >: the leftmost of equal scores stays
        if best is None:
            return symbols
        k = best[1]
        symbols[k : k + 2] = [symbols[k] + symbols[k + 1]]


def test_worked_example_fuses_the_best_scored_piece_first():
    # "ab" scores higher than "aa", so "aab" → a + ab, not aa + b.
    scores = {"a": 0.0, "b": 0.0, "aa": -2.0, "ab": -1.0}
    assert fuse_by_score("aab", score_places(list(scores), list(scores.values()))) == ["a", "ab"]
    # Equal scores: the leftmost pair wins ("aaa" → aa + a).
    assert fuse_by_score("aaa", {"a": 0, "aa": 1}) == ["aa", "a"]
    assert fuse_by_score("", {}) == []


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="abc▁", max_size=24), st.dictionaries(
    st.text(alphabet="abc▁", min_size=2, max_size=4), st.integers(-5, 0), max_size=20))
def test_fuse_by_score_equals_the_naive_rule(text, pieces):
    scores = {**{c: 0.0 for c in "abc▁"}, **{p: float(s) for p, s in pieces.items()}}
    place = score_places(list(scores), list(scores.values()))
    assert fuse_by_score(text, place) == naive_fuse_by_score(text, scores)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab▁ ", max_size=24), st.dictionaries(
    st.text(alphabet="ab▁", min_size=2, max_size=4), st.integers(-5, 0), max_size=20))
def test_word_by_word_encoding_equals_fusing_the_whole_stretch(text, extra):
    """Cutting before "▁" is exact even when pieces hold an inner "▁" (they block cuts)."""
    scores = {**{c: 0.0 for c in "ab▁"}, **{p: float(s) for p, s in extra.items()}}
    pieces = list(scores)
    whole = fuse_by_score(text.replace(" ", "▁"), score_places(pieces, list(scores.values())))
    encoder = SentencePieceEncoder(SentencePieceParts(pieces, list(scores.values())))
    assert encoder.encode(text, frozenset()) == [pieces.index(s) for s in whole]


def test_split_words_cuts_before_spaces_no_piece_crosses():
    assert split_words("▁a▁bb▁c", []) == ["▁a", "▁bb", "▁c"]
    assert split_words("a▁b>▁</c", [(">▁</", 1)]) == ["a", "▁b>▁</c"]
    assert word_cut_blockers(["▁a", "a▁b", "▁▁"]) == [("a▁b", 1), ("▁▁", 1)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 3), max_size=24),
       st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), max_size=12, unique=True))
def test_fuse_by_rank_equals_the_reference_bpe(ids, pairs):
    ranks = {pair: (rank, 7 + rank) for rank, pair in enumerate(pairs)}
    assert fuse_by_rank(ids, ranks) == encode_chunk(ids, ranks)


def test_whole_pieces_longest_first_versus_leftmost_longest():
    pieces = {"ab": 1, "bcd": 2}
    # llama.cpp cuts the longest piece out first; Hugging Face takes the leftmost match.
    assert split_longest_first("abcd", list(pieces.items())) == ["a", 2]
    assert split_leftmost_longest("abcd", pieces) == [1, "cd"]
    assert split_longest_first("x\n\n\n\ny", [("\n\n", 5), ("\n\n\n", 6)]) == ["x", 6, "\ny"]
    assert split_leftmost_longest("", {"a": 1}) == []


def test_piece_bytes_and_merges_from_scores():
    assert piece_bytes("▁x") == b" x"
    assert piece_bytes("<0xE2>") == b"\xe2"
    assert piece_bytes("<start_of_turn>") == b"<start_of_turn>"
    pieces, scores = ["a", "b", "ab", "abb", "bb"], [0.0, 0.0, -1.0, -3.0, -2.0]
    # ab (-1) first, then bb (-2), then both splits of abb (-3) in split order.
    assert merges_from_scores(pieces, scores) == [(0, 1), (1, 1), (0, 4), (2, 1)]


def test_unknown_characters_fall_back_to_bytes_or_unk():
    pieces = ["<unk>", "a", "▁", "▁a", *(f"<0x{b:02X}>" for b in range(256))]
    parts = SentencePieceParts(pieces, [0.0, -1.0, -1.0, -0.5] + [0.0] * 256, unk_id=0)
    tok = Tokenizer(parts)
    ids = tok.encode("a é")
    assert ids == [1, 2, 4 + 0xC3, 4 + 0xA9]  # "a", "▁", then é as two bytes
    assert tok.decode(ids) == "a é"
    assert [tok.token_bytes(i) for i in ids] == [b"a", b" ", b"\xc3", b"\xa9"]
    no_bytes = Tokenizer(SentencePieceParts(pieces[:4], [0.0, -1.0, -1.0, -0.5], unk_id=0))
    assert no_bytes.encode("aé") == [1, 0]
    with pytest.raises(ParrotError, match="no piece for"):
        Tokenizer(SentencePieceParts(pieces[1:4], [-1.0, -1.0, -0.5])).encode("é")


# --- parity with `tokenizers` on a locally built Gemma-style tokenizer ------------------
def build_hf_spm(docs: list[str], vocab_size: int = 700) -> tokenizers.Tokenizer:
    """A byte-fallback BPE like Gemma's tokenizer.json: "▁" normalizer, no pre-tokenizer,
    "<0xXX>" pieces, special and user-defined added tokens."""
    trainer_tok = tokenizers.Tokenizer(models.BPE())
    trainer_tok.normalizer = normalizers.Replace(" ", "▁")
    trainer_tok.pre_tokenizer = pre_tokenizers.Split("▁", "merged_with_next")
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, limit_alphabet=60, show_progress=False)
    trainer_tok.train_from_iterator(docs, trainer)
    trained = json.loads(trainer_tok.to_str())["model"]
    vocab = {s: i for i, s in enumerate(SPECIALS)}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for piece in sorted(trained["vocab"], key=trained["vocab"].get):
        vocab.setdefault(piece, len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]]
    tok = tokenizers.Tokenizer(models.BPE(vocab, merges, byte_fallback=True))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                     decoders.Fuse()])
    tok.add_special_tokens(SPECIALS)
    tok.add_tokens([AddedToken(t, normalized=False) for t in USER_DEFINED])
    # Matched in the normalized text (their content normalized too): after the others.
    tok.add_tokens([AddedToken(t, normalized=True) for t in NORMALIZED_USER])
    return tok


@pytest.fixture(scope="module")
def hf_spm(corpus):
    return build_hf_spm([d[:2000] for d in corpus[:300]])


@pytest.fixture(scope="module")
def ours(hf_spm, tmp_path_factory):
    folder = tmp_path_factory.mktemp("spm")
    hf_spm.save(str(folder / "tokenizer.json"))
    return Tokenizer.load(folder)


WORDS = st.sampled_from(["the", " the", "Hello", " world", "def", " return", "x**2", "naïve",
                         "café", "日本語", "🦜", "👩\u200d👩\u200d👧", "Straße", "₂", "\u0301",
                         "▁", " ", "  ", "   ", "\n", "\n\n", "\t", "<b>", "<bos>",
                         "<start_of_turn>", "<end_of_turn>", "<unk>", "0x41", "<0x41>", "12345",
                         "<i>", "x y", "x▁y", "<b", "    "])
TEXTS = st.lists(st.one_of(WORDS, st.text(max_size=6)), max_size=25).map("".join)


@settings(max_examples=250, deadline=None)
@given(TEXTS)
def test_encode_equals_tokenizers_on_varied_text(hf_spm, ours, text):
    expected = hf_spm.encode(text, add_special_tokens=False).ids
    assert ours.encode(text, allowed_special="all") == expected
    assert ours.decode(expected) == text.replace("▁", " ")  # a literal "▁" reads as a space


def test_the_file_reads_as_a_sentencepiece_tokenizer(ours, hf_spm, corpus):
    assert isinstance(ours.parts, SentencePieceParts)
    assert ours.special_tokens == {s: i for i, s in enumerate(SPECIALS)}
    assert ours.bos_id == 0 and ours.eos_id == 1
    assert ours.vocab_size == hf_spm.get_vocab_size()
    x_y = hf_spm.token_to_id("x y")
    assert ours.parts.normalized_user["x▁y"] == x_y  # its content normalized, as HF does
    assert ours.encode("x y|x▁y") == hf_spm.encode("x y|x▁y").ids == [x_y, *ours.encode("|"), x_y]
    text = "\n".join(corpus[300:330]) + "\n\n\n🦜 ünïcödé\t\tend"
    ids = hf_spm.encode(text, add_special_tokens=False).ids
    assert ours.encode(text) == ids
    assert ours.decode(ids) == hf_spm.decode(ids) == text
    assert any(ours.parts.pieces[i].startswith("<0x") for i in ids)  # byte fallback was used


def test_saved_file_loads_in_tokenizers_and_encodes_identically(ours, tmp_path, corpus):
    ours.save(tmp_path)
    theirs = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    again = Tokenizer.load(tmp_path)
    text = "<start_of_turn>user\n" + "\n".join(corpus[330:360]) + "  ∑ 🦜<end_of_turn>"
    ids = ours.encode(text, allowed_special="all")
    assert theirs.encode(text, add_special_tokens=False).ids == ids
    assert again.encode(text, allowed_special="all") == ids


def test_dummy_prefix_files_match_tokenizers(hf_spm, tmp_path, corpus):
    """Llama-2 style: Prepend("▁") before Replace, so every stretch between added tokens
    starts with "▁" (as llama.cpp's add_space_prefix does after each special token)."""
    data = json.loads(hf_spm.to_str())
    data["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "▁"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
    (tmp_path / "tokenizer.json").write_text(json.dumps(data))
    theirs = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    ours = Tokenizer.load(tmp_path)
    assert ours.parts.add_dummy_prefix
    for text in ["hello world", "<bos>hi there<eos> again", "a\n\nb   c<i>x y", corpus[400][:3000]]:
        assert ours.encode(text, allowed_special="all") == \
            theirs.encode(text, add_special_tokens=False).ids, text[:40]


def test_a_scored_vocabulary_saves_with_merges_that_replay_its_scores(hf_spm, tmp_path, corpus):
    """A GGUF-like vocabulary (scores, no merges) written as tokenizer.json: `tokenizers`
    fusing by the derived ranks gives the same ids as the score rule."""
    pieces = [p for p, _ in sorted(hf_spm.get_vocab(with_added_tokens=False).items(),
                                   key=lambda item: item[1])]
    scores = [0.0 if p.startswith("<") else -float(i) for i, p in enumerate(pieces)]
    parts = SentencePieceParts(pieces, scores, {"<bos>": 0, "<eos>": 1})
    scored = Tokenizer(parts)
    scored.save(tmp_path)
    theirs = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    text = "\n".join(corpus[200:210]) + " naïve 🦜"
    assert theirs.encode(text).ids == scored.encode(text) == \
        Tokenizer.load(tmp_path).encode(text)


def test_streaming_decoder_rebuilds_text_split_into_byte_pieces(ours):
    text = "emoji 🦜 and 日本語 with ünïcödé"
    ids = ours.encode(text)
    stream = IncrementalDetokenizer(ours.token_bytes)
    pieces = [stream.push(i) for i in ids]
    assert "".join(pieces) + stream.flush() == text
    assert "\ufffd" not in "".join(pieces)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(normalizer={"type": "Lowercase"}), "normalizer"),
    (lambda d: d.update(pre_tokenizer={"type": "Metaspace"}), "Metaspace pre-tokenizer"),
    (lambda d: d["model"].update(byte_fallback=False), "without byte fallback"),
])
def test_unsupported_variants_are_refused_clearly(ours, tmp_path, change, message):
    ours.save(tmp_path)
    data = json.loads((tmp_path / "tokenizer.json").read_text())
    change(data)
    (tmp_path / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(ParrotError, match=message):
        Tokenizer.load(tmp_path)


def test_encoder_memo_does_not_change_results(ours):
    encoder = SentencePieceEncoder(ours.parts, max_entries=2)
    texts = ["a b", "c d", "a b", "e f g", "a b"]
    assert [encoder.encode(t, frozenset()) for t in texts] == \
        [ours.encode_reference(t) for t in texts]
