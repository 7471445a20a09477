"""Shared fixtures: the embedded corpus split into training and held-out halves."""

import pytest
from tokenizer_samples import SPECIALS, UNICODE_SAMPLE

from parrot.data.corpus import embedded_corpus
from parrot.tokenizer import Tokenizer


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    return embedded_corpus()


@pytest.fixture(scope="session")
def train_docs(corpus: list[str]) -> list[str]:
    return corpus[::2] + [UNICODE_SAMPLE] * 20


@pytest.fixture(scope="session")
def held_out_text(corpus: list[str]) -> str:
    """About 1 MB of text that the tokenizers were not trained on."""
    text = "\n".join(corpus[1::2])[:990_000]
    return text + UNICODE_SAMPLE * 50


@pytest.fixture(scope="session")
def trained(train_docs: list[str]) -> Tokenizer:
    return Tokenizer.train(train_docs, vocab_size=2048, special_tokens=SPECIALS)
