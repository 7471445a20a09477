"""Gemma 3's SentencePiece-style tokenizer from its GGUF gives exactly llama.cpp's ids.

The file is pulled once into the test model cache (skipped without network); only its
metadata is needed. References: `gemma3-270m-q4_k_m.json` (llama.cpp via llama-cpp-python).
"""

from __future__ import annotations

import json

import pytest
from shared_paths import REFERENCES, models_home, reference_text

from parrot.errors import ParrotError
from parrot.hub.gguf_tokenizer import tokenizer_from_gguf
from parrot.infer.streaming import IncrementalDetokenizer
from parrot.tokenizer import SentencePieceParts, Tokenizer


@pytest.fixture(scope="module")
def gemma3_reference() -> dict:
    path = REFERENCES / "gemma3-270m-q4_k_m.json"
    if not path.is_file():
        pytest.skip(f"llama.cpp references not found at {path}")
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def gemma3_metadata() -> dict:
    from parrot.hub.gguf import read_gguf
    from parrot.hub.pull import pull

    try:
        path = pull("gemma3-270m", models_home())
    except ParrotError as err:
        pytest.skip(f"Gemma 3 GGUF unavailable: {err.message}")
    return read_gguf(path).metadata


@pytest.fixture(scope="module")
def gemma3_tokenizer(gemma3_metadata):
    return tokenizer_from_gguf(gemma3_metadata, "Gemma 3")


def test_metadata_describes_a_sentencepiece_vocabulary_without_dummy_prefix(gemma3_tokenizer):
    tokenizer, _ = gemma3_tokenizer
    parts = tokenizer.parts
    assert isinstance(parts, SentencePieceParts) and parts.merges is None
    assert not parts.add_dummy_prefix  # Gemma 3: tokenizer.ggml.add_space_prefix = false
    assert tokenizer.vocab_size == 262_144
    assert parts.user_defined["\n\n\n"] == 109 and parts.user_defined["  "] == 138
    assert parts.special_tokens["<start_of_turn>"] == 105
    assert parts.special_tokens["</s>"] == 212  # user-defined in the file, ends generation


def test_every_reference_text_and_file_tokenizes_like_llama_cpp(gemma3_tokenizer,
                                                                 gemma3_reference):
    tokenizer, _ = gemma3_tokenizer
    entries = gemma3_reference["tokenization"]
    for entry in entries:
        text = reference_text(entry)
        ids = tokenizer.encode(text, disallowed_special=())
        assert ids == entry["ids"], text[:60]
        assert tokenizer.decode(ids) == text  # and decoding gives the text back
    assert len(entries) >= 26 and any("stdlib_file" in e for e in entries)


def test_prompts_with_bos_and_turn_markers_match_llama_cpp(gemma3_tokenizer, gemma3_reference):
    tokenizer, info = gemma3_tokenizer
    assert info.add_bos  # Gemma's file asks for BOS in front of every prompt
    for case in gemma3_reference["greedy"]:
        ids = [tokenizer.bos_id, *tokenizer.encode(case["prompt"], allowed_special="all")]
        assert ids == case["prompt_ids"], case["name"]
        assert tokenizer.decode(ids[1:]) == case["prompt"]


def test_special_ids_and_no_chat_template_for_the_base_model(gemma3_tokenizer, gemma3_reference):
    tokenizer, info = gemma3_tokenizer
    assert info.bos_id == tokenizer.bos_id == gemma3_reference["bos_token_id"] == 2
    assert tokenizer.eos_id == info.eos_ids[0] == 1  # <eos>, the declared EOS
    assert set(info.eos_ids) == set(gemma3_reference["eog_token_ids"]) == {1, 106, 212}
    assert info.pad_id == 0 and info.chat_template is None


def test_plain_text_containing_markers_is_refused_or_spelled_out(gemma3_tokenizer):
    tokenizer, _ = gemma3_tokenizer
    text = "say <end_of_turn> here"
    with pytest.raises(ParrotError, match="special token '<end_of_turn>'"):
        tokenizer.encode(text)
    spelled = tokenizer.encode(text, disallowed_special=())
    assert 106 not in spelled and tokenizer.decode(spelled) == text
    assert tokenizer.encode("<end_of_turn>", allowed_special="all") == [106]
    # User-defined pieces are matched in plain text too: runs of tabs, HTML tags.
    assert tokenizer.encode("\t\t<table>") == [tokenizer.parts.user_defined["\t\t"],
                                                tokenizer.parts.user_defined["<table>"]]


def test_byte_pieces_stream_through_the_engine_decoder(gemma3_tokenizer):
    tokenizer, _ = gemma3_tokenizer
    text = "emoji: 🦜🚀👩\u200d👩\u200d👧 ok 𝔹"
    ids = tokenizer.encode(text)
    assert tokenizer.token_bytes(tokenizer.parts.pieces.index("<0x0A>")) == b"\n"
    assert tokenizer.token_bytes(tokenizer.encode(" world")[0]) == b" world"
    stream = IncrementalDetokenizer(tokenizer.token_bytes)
    out = [stream.push(i) for i in ids]
    assert "".join(out) + stream.flush() == text and "\ufffd" not in "".join(out)


@pytest.mark.slow
def test_saved_tokenizer_json_encodes_identically_in_tokenizers(gemma3_tokenizer,
                                                                 gemma3_reference, tmp_path):
    """save() writes merges derived from the scores; `tokenizers` and parrot's own reader
    then give llama.cpp's ids too (about 30 s: half a million merges)."""
    tokenizers = pytest.importorskip("tokenizers")
    tokenizer, _ = gemma3_tokenizer
    tokenizer.save(tmp_path)
    theirs = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    again = Tokenizer.load(tmp_path)
    for entry in gemma3_reference["tokenization"]:
        text = reference_text(entry)
        assert theirs.encode(text, add_special_tokens=False).ids == entry["ids"], text[:60]
        assert again.encode(text, disallowed_special=()) == entry["ids"], text[:60]
    for case in gemma3_reference["greedy"]:
        expected = case["prompt_ids"][1:]
        assert theirs.encode(case["prompt"], add_special_tokens=False).ids == expected
        assert again.encode(case["prompt"], allowed_special="all") == expected


# --- without the file: small metadata written by hand ------------------------------------
def _metadata(**extra) -> dict:
    tokens = ["<unk>", "<s>", "</s>", "\n\n", "▁", "a", "b", "▁a", "ab", "▁ab",
              *(f"<0x{b:02X}>" for b in range(256))]
    types = [2, 3, 3, 4, 1, 1, 1, 1, 1, 1, *([6] * 256)]
    scores = [0.0, 0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -4.0, -5.0, -6.0, *([0.0] * 256)]
    return {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": tokens,
            "tokenizer.ggml.token_type": types, "tokenizer.ggml.scores": scores,
            "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
            "tokenizer.ggml.unknown_token_id": 0, **extra}


def test_dummy_prefix_goes_before_every_stretch_when_the_file_asks_for_it():
    plain, _ = tokenizer_from_gguf(_metadata(**{"tokenizer.ggml.add_space_prefix": False}))
    prefixed, info = tokenizer_from_gguf(_metadata())  # llama.cpp's default: a prefix
    assert plain.encode("ab ab") == [8, 9]  # "ab", "▁ab"
    # " ab▁ab": after "<s>" and after the user-defined "\n\n" a stretch starts again.
    assert prefixed.encode("ab ab<s>a\n\nb", allowed_special="all") == [9, 9, 1, 7, 3, 4, 6]
    assert plain.encode("é") == [10 + 0xC3, 10 + 0xA9]  # no piece: its UTF-8 bytes
    assert (info.bos_id, info.eos_ids) == (1, (2,))


@pytest.mark.parametrize("change, message", [
    ({"tokenizer.ggml.model": "bert"}, "'bert' tokenizer"),
    ({"tokenizer.ggml.scores": [0.0]}, "scores"),
    ({"tokenizer.ggml.tokens": None}, "no tokenizer.ggml.tokens"),
])
def test_bad_metadata_is_refused_with_one_sentence(change, message):
    metadata = {k: v for k, v in {**_metadata(), **change}.items() if v is not None}
    with pytest.raises(ParrotError, match=message):
        tokenizer_from_gguf(metadata, "test.gguf")
