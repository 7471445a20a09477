"""Fixtures for the inference tests (doubles live in infer_helpers.py)."""

import pytest
from infer_helpers import ByteTokenizer, ScriptedModel


@pytest.fixture
def byte_tok():
    return ByteTokenizer()


@pytest.fixture
def scripted():
    return ScriptedModel
