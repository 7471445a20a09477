"""The tokenizer read from SmolLM2's GGUF gives exactly llama.cpp's ids."""

from __future__ import annotations

import pytest
from shared_paths import reference_text

from parrot.hub.gguf_tokenizer import DIGIT_SPLIT_GPT2, tokenizer_from_gguf
from parrot.tokenizer.pretokenize import pretokenize


@pytest.fixture(scope="module")
def smollm2_tokenizer(smollm2_gguf):
    return tokenizer_from_gguf(smollm2_gguf.metadata, "SmolLM2")


def test_digit_split_isolates_each_digit_and_keeps_space_runs_whole():
    # llama.cpp's "smollm" rule cuts digits out first, then applies GPT-2's split between.
    assert pretokenize("a  12 b3", DIGIT_SPLIT_GPT2) == ["a", "  ", "1", "2", " b", "3"]
    assert pretokenize("x = 7\n", DIGIT_SPLIT_GPT2) == ["x", " =", " ", "7", "\n"]


def test_every_reference_text_and_file_tokenizes_like_llama_cpp(smollm2_tokenizer,
                                                                 smollm2_reference):
    tokenizer, _ = smollm2_tokenizer
    checked = 0
    for entry in smollm2_reference["tokenization"]:
        text = reference_text(entry)
        assert tokenizer.encode(text, disallowed_special=()) == entry["ids"], text[:60]
        checked += 1
    assert checked == len(smollm2_reference["tokenization"]) >= 25


def test_prompts_with_special_tokens_match_llama_cpp(smollm2_tokenizer, smollm2_reference):
    tokenizer, info = smollm2_tokenizer
    assert not info.add_bos  # SmolLM2's file says not to prepend BOS
    for case in smollm2_reference["greedy"]:
        assert tokenizer.encode(case["prompt"], allowed_special="all") == case["prompt_ids"]


def test_special_ids_and_template_come_from_metadata(smollm2_tokenizer, smollm2_reference):
    tokenizer, info = smollm2_tokenizer
    assert info.bos_id == tokenizer.bos_id == smollm2_reference["bos_token_id"] == 1
    assert set(info.eos_ids) == set(smollm2_reference["eog_token_ids"])
    assert tokenizer.eos_id == 2  # <|im_end|>, the declared EOS
    assert "<|im_start|>" in info.chat_template
    assert "You are a helpful AI assistant named SmolLM" in info.chat_template


def test_decode_inverts_encode_on_unicode(smollm2_tokenizer):
    tokenizer, _ = smollm2_tokenizer
    text = "naïve 🦜 2026 日本語\n\tok"
    assert tokenizer.decode(tokenizer.encode(text)) == text
