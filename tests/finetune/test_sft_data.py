"""SFT data: JSONL shapes, the assistant-only loss mask, and clear errors for bad input."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import byte_chat_tokenizer

from parrot.data.sft import collate, encode_conversations, load_conversations
from parrot.errors import ParrotError
from parrot.training.objectives_sft import masked_next_token_loss

TWO_TURNS = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"},
             {"role": "user", "content": "ok?"}, {"role": "assistant", "content": "sure"}]


def test_two_turn_mask_is_exactly_the_assistant_answers_and_their_end_markers():
    tok = byte_chat_tokenizer()
    [(ids, mask)] = encode_conversations([TWO_TURNS], tok, "chatml", max_len=200)
    # Counted by hand: one token per byte, one per special marker.
    # "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"    -> positions 0..20
    # "yo<|im_end|>\n"                                             -> 21..24 (loss)
    # "<|im_start|>user\nok?<|im_end|>\n<|im_start|>assistant\n"   -> 25..46
    # "sure<|im_end|>\n"                                           -> 47..52 (loss)
    assert len(ids) == 53
    expected = [1 if 21 <= i <= 24 or 47 <= i <= 52 else 0 for i in range(53)]
    assert mask == expected
    assert tok.decode([i for i, m in zip(ids, mask, strict=True) if m]) == \
        "yo<|im_end|>\nsure<|im_end|>\n"
    assert tok.decode(ids[21:25]) == "yo<|im_end|>\n"


def test_batch_mask_sits_on_the_targets():
    tok = byte_chat_tokenizer()
    examples = encode_conversations([TWO_TURNS, TWO_TURNS[:2]], tok, "chatml", max_len=200)
    batch = collate(examples)
    assert batch.tokens.shape == (2, 53) and batch.mask.shape == (2, 52)
    # target t is tokens[t + 1]; it carries loss iff that token is an assistant token
    assert batch.mask[0].tolist() == [float(m) for m in examples[0][1][1:]]
    assert batch.mask[1, 25:].sum() == 0  # padding of the shorter example carries no loss


def test_masked_loss_equals_mean_over_masked_positions():
    torch.manual_seed(0)
    logits, targets = torch.randn(2, 5, 7), torch.randint(0, 7, (2, 5))
    mask = torch.tensor([[0, 1, 1, 0, 0], [1, 0, 0, 0, 1]], dtype=torch.float32)
    logp = torch.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0]
    expected = -(logp * mask).sum() / 4
    torch.testing.assert_close(masked_next_token_loss(logits, targets, mask), expected)


def test_alpaca_records_become_user_and_assistant_turns(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"instruction": "Add", "input": "2+2", "output": "4"}) + "\n"
                    + json.dumps({"instruction": "Hi", "output": "Hello"}) + "\n")
    convs = load_conversations(path)
    assert convs[0] == [{"role": "user", "content": "Add\n\n2+2"},
                        {"role": "assistant", "content": "4"}]
    assert convs[1][0] == {"role": "user", "content": "Hi"}


def test_malformed_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"instruction": "a", "output": "b"}) + "\n\n{not json\n")
    with pytest.raises(ParrotError, match=r"bad\.jsonl:3: not valid JSON"):
        load_conversations(path)


def test_conversation_without_assistant_turn_is_an_error(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "hello"}]}) + "\n")
    with pytest.raises(ParrotError, match=r"c\.jsonl:1: the conversation has no assistant turn"):
        load_conversations(path)


def test_record_of_unknown_shape_is_an_error(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"text": "hello"}) + "\n")
    with pytest.raises(ParrotError, match=r"d\.jsonl:1: expected an object with 'messages'"):
        load_conversations(path)
