"""Preference records (explicit and implicit prompt) → ids with completion-only masks."""

from __future__ import annotations

import pytest
from pref_helpers import byte_chat_tokenizer, write_jsonl

from parrot.data.preference import (
    collate_pairs,
    encode_completion,
    encode_preferences,
    load_preferences,
    record_to_pair,
)
from parrot.errors import ParrotError

TOK = byte_chat_tokenizer()
USER = [{"role": "user", "content": "hi"}]


def masked_text(ids: list[int], mask: list[int]) -> str:
    return TOK.decode([i for i, m in zip(ids, mask, strict=True) if m])


def test_explicit_strings_become_a_user_turn_and_assistant_answers():
    pair = record_to_pair({"prompt": "hi", "chosen": "yes", "rejected": "no"}, "x")
    assert pair.prompt == USER
    assert pair.chosen == [{"role": "assistant", "content": "yes"}]
    assert pair.rejected == [{"role": "assistant", "content": "no"}]


def test_mask_covers_only_the_completion_rendered_with_the_template():
    ids, mask = encode_completion(USER, [{"role": "assistant", "content": "yes"}], TOK,
                                  "chatml", 512)
    assert TOK.decode(ids) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyes" \
                              "<|im_end|>\n"
    assert masked_text(ids, mask) == "yes<|im_end|>\n"


def test_earlier_assistant_turns_of_the_prompt_carry_no_mask():
    prompt = [*USER, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "ok?"}]
    pair = record_to_pair({"prompt": prompt, "chosen": "fine", "rejected": "bad"}, "x")
    ids, mask = encode_completion(pair.prompt, pair.chosen, TOK, "chatml", 512)
    assert masked_text(ids, mask) == "fine<|im_end|>\n"


def test_implicit_conversations_split_at_their_common_prefix():
    chosen = [*USER, {"role": "assistant", "content": "yes"}]
    rejected = [*USER, {"role": "assistant", "content": "no"}]
    implicit = record_to_pair({"chosen": chosen, "rejected": rejected}, "x")
    explicit = record_to_pair({"prompt": USER, "chosen": chosen[1:], "rejected": rejected[1:]},
                              "x")
    assert implicit == explicit


def test_implicit_strings_split_at_their_common_text():
    pair = record_to_pair({"chosen": "Q: hi A: yes", "rejected": "Q: hi A: no"}, "x")
    assert pair.prompt == [{"role": "user", "content": "Q: hi A: "}]
    assert pair.chosen[0]["content"] == "yes" and pair.rejected[0]["content"] == "no"


def test_a_batch_holds_chosen_rows_then_rejected_rows():
    pairs = encode_preferences([record_to_pair({"prompt": "p", "chosen": c, "rejected": r}, "x")
                                for c, r in (("aa", "b"), ("c", "dddd"))], TOK, "chatml", 512)
    batch = collate_pairs(pairs)
    rows = [pairs[0][0], pairs[1][0], pairs[0][1], pairs[1][1]]
    assert batch.tokens.shape[0] == 4
    assert batch.lengths.tolist() == [len(ids) for ids, _ in rows]
    for row, (ids, mask) in enumerate(rows):
        assert batch.tokens[row, : len(ids)].tolist() == ids
        assert batch.mask[row, : len(ids) - 1].tolist() == mask[1:]
        assert batch.mask[row, len(ids) - 1:].sum() == 0  # padding carries no mask


@pytest.mark.parametrize("record, message", [
    ({"prompt": "p", "chosen": "same", "rejected": "same"}, "identical"),
    ({"prompt": "p", "rejected": "no"}, "no 'chosen'"),
    ({"prompt": "p", "chosen": "yes"}, "no 'rejected'"),
    ({"chosen": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "x"}],
      "rejected": [{"role": "user", "content": "b"}, {"role": "assistant", "content": "y"}]},
     "share no leading message"),
    ({"chosen": "abc", "rejected": "xyz"}, "share no common prefix"),
    ({"prompt": "p", "chosen": 3, "rejected": "no"}, "must be a string or a list"),
])
def test_bad_records_name_the_problem(record, message):
    with pytest.raises(ParrotError, match=message):
        record_to_pair(record, "prefs.jsonl:1")


def test_a_bad_line_is_reported_with_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"},
                                              {"prompt": "p", "chosen": "a"}])
    with pytest.raises(ParrotError, match=r"p\.jsonl:2: the record has no 'rejected'"):
        load_preferences(path)
