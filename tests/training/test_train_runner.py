"""Pieces of the training pipeline that need no training."""

import pytest

from parrot.errors import ParrotError
from parrot.model import ModelConfig
from parrot.tokenizer import Tokenizer
from parrot.training.config import DataSpec, TrainConfig
from parrot.training.runner import build_tokenizer, check_context


def test_byte_data_uses_the_256_byte_tokenizer():
    tok = build_tokenizer(DataSpec(tokenizer="bytes"), ["ignored"], None)
    assert tok.vocab_size == 256 and tok.encode("hé") == list("hé".encode())


def test_bpe_data_trains_on_the_training_texts_with_an_eos_token():
    tok = build_tokenizer(DataSpec(tokenizer="bpe", vocab_size=300), ["abab abab " * 50], None)
    assert 257 < tok.vocab_size <= 300 and tok.eos_id is not None  # merges stop when pairs run out


def test_a_given_tokenizer_is_used_as_is(tmp_path):
    given = Tokenizer.train(["hello hello world " * 30], 270)
    given.save(tmp_path)
    tok = build_tokenizer(DataSpec(tokenizer="bpe", vocab_size=512), ["other"], tmp_path)
    assert tok.vocab_size == given.vocab_size != 512
    assert tok.encode("hello") == given.encode("hello")


def test_windows_must_fit_the_models_positions():
    model = ModelConfig(context_length=32)
    assert check_context(model, TrainConfig()) == 32
    assert check_context(model, TrainConfig(seq_len=16)) == 16
    with pytest.raises(ParrotError, match="longer than model.context_length=32"):
        check_context(model, TrainConfig(seq_len=33))
