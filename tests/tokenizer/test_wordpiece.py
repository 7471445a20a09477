"""WordPiece (BERT) tokenization against the `tokenizers` library."""

import json
import unicodedata

import pytest
import tokenizers
from encoder_helpers import minilm_dir, varied_sentences
from hypothesis import given, settings
from hypothesis import strategies as st

from parrot.errors import ParrotError
from parrot.tokenizer import Tokenizer, WordPieceTokenizer, load_tokenizer
from parrot.tokenizer.wordpiece import (
    WordPieceParts,
    normalize,
    split_words,
    truncate_pair,
    wordpiece,
)

# Python (Unicode 14) and `tokenizers` (its own Rust tables) disagree on characters whose
# category changed between Unicode versions (one sees punctuation or a control character
# where the other sees nothing): compare on characters whose category is settled, i.e.
# already the same in Unicode 3.2.
ASSIGNED = st.characters(codec="utf-8", exclude_categories=("Cs", "Cn")).filter(
    lambda c: unicodedata.ucd_3_2_0.category(c) == unicodedata.category(c))
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PIECES = ["the", "cat", "sat", "on", "mat", "un", "##aff", "##able", "hello", "world", "a",
          "##b", "##c", "cafe", "naive", ",", ".", "!", "'", "s", "t", "don", "中", "文",
          "##s", "##ing", "play", "re", "##play"]


def small_parts(**changes) -> WordPieceParts:
    vocab = SPECIALS + PIECES
    return WordPieceParts(vocab=vocab, special_tokens={s: i for i, s in enumerate(SPECIALS)},
                          **changes)


def reference_for(tok: WordPieceTokenizer, tmp_path) -> tokenizers.Tokenizer:
    """`tokenizers` reading the tokenizer.json our `save` wrote."""
    tok.save(tmp_path)
    return tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))


def test_wordpiece_is_greedy_longest_match_first():
    vocab = {"un": 0, "##aff": 1, "##able": 2, "u": 3, "##n": 4}
    assert wordpiece("unaffable", vocab, unk_id=9) == [0, 1, 2]


def test_a_word_that_cannot_be_covered_is_one_unk():
    assert wordpiece("unxyz", {"un": 0, "##x": 1}, unk_id=9) == [9]
    assert wordpiece("a" * 101, {"a": 0, "##a": 1}, unk_id=9) == [9]


def test_normalize_lowercases_strips_accents_spaces_cjk_and_drops_controls():
    assert normalize("Café\x00 Naïve\t中文", small_parts()) == "cafe naive  中  文 "


def test_strip_accents_false_keeps_accents_while_lowercasing():
    assert normalize("Café", small_parts(strip_accents=False)) == "café"


def test_cjk_ranges_follow_the_tokenizers_library():
    ref = tokenizers.normalizers.BertNormalizer(handle_chinese_chars=True, lowercase=False)
    for c in ("中", "\U0002b820", "\U0002b920", "\U0002cea0", "\u3400", "가"):
        assert normalize(c, small_parts(lowercase=False)) == ref.normalize_str(c), hex(ord(c))


def test_split_words_isolates_every_punctuation_character():
    assert split_words("don't stop, $5!") == ["don", "'", "t", "stop", ",", "$", "5", "!"]


def test_pairs_get_cls_sep_and_token_types(tmp_path):
    tok = WordPieceTokenizer(small_parts())
    ids, types = tok.encode_inputs("the cat", pair="sat on")
    ref = reference_for(tok, tmp_path).encode("the cat", "sat on")
    assert ids == ref.ids and types == ref.type_ids
    assert types == [0, 0, 0, 0, 1, 1, 1]


def test_truncation_removes_from_the_longer_text_first():
    a, b = [1, 2, 3, 4, 5], [6, 7]
    truncate_pair(a, b, 5)
    assert (a, b) == ([1, 2, 3], [6, 7])


def test_allowed_special_tokens_in_text_become_their_ids():
    tok = WordPieceTokenizer(small_parts())
    assert tok.encode("the [MASK] sat", allowed_special={"[MASK]"}) == [5, 4, 7]
    plain = tok.encode("the [MASK] sat")
    assert 4 not in plain  # not allowed: read as text ("[", "mask", "]" → mostly [UNK])


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=ASSIGNED,
               max_size=40))
def test_ids_match_tokenizers_on_arbitrary_text(tmp_path_factory, text):
    tok = WordPieceTokenizer(small_parts())
    ref = _cached_reference(tok, tmp_path_factory)
    assert tok.encode_inputs(text)[0] == ref.encode(text).ids


_REFS: dict = {}


def _cached_reference(tok, tmp_path_factory):
    if "small" not in _REFS:
        _REFS["small"] = reference_for(tok, tmp_path_factory.mktemp("wp"))
    return _REFS["small"]


def test_vocab_txt_with_tokenizer_config_reads_do_lower_case(tmp_path):
    (tmp_path / "vocab.txt").write_text("\n".join(SPECIALS + PIECES + ["Hello"]) + "\n",
                                        encoding="utf-8")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    tok = load_tokenizer(tmp_path)
    assert isinstance(tok, WordPieceTokenizer) and not tok.parts.lowercase
    assert tok.tokenize("Hello hello") == ["Hello", "hello"]
    assert tok.bos_id == 2 and tok.eos_id == 3 and tok.mask_id == 4


def test_save_load_round_trip_keeps_ids(tmp_path):
    tok = WordPieceTokenizer(small_parts(lowercase=False))
    tok.save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert again.parts == tok.parts


def test_decode_glues_continuations():
    tok = WordPieceTokenizer(small_parts())
    assert tok.decode(tok.encode("unaffable replay, the cat!")) == "unaffable replay, the cat!"


def test_bpe_loader_refuses_wordpiece_with_a_clear_message(tmp_path):
    WordPieceTokenizer(small_parts()).save(tmp_path)
    with pytest.raises(ParrotError, match="WordPiece"):
        Tokenizer.load(tmp_path)


# --- the real MiniLM vocabulary (pulled once; skipped without network) -----------------
@pytest.fixture(scope="module")
def minilm_tokenizers():
    folder = minilm_dir()
    ref = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    ref.no_truncation()
    ref.no_padding()
    return load_tokenizer(folder), ref


def test_minilm_ids_match_tokenizers_on_varied_sentences(minilm_tokenizers):
    ours, ref = minilm_tokenizers
    for text in varied_sentences(200):
        assert ours.encode_inputs(text)[0] == ref.encode(text).ids, text


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=ASSIGNED,
                    max_size=60))
def test_minilm_ids_match_tokenizers_on_a_hypothesis_sample(minilm_tokenizers, text):
    ours, ref = minilm_tokenizers
    assert ours.encode_inputs(text)[0] == ref.encode(text).ids
