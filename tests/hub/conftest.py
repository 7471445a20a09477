"""Shared fixtures: the real SmolLM2 GGUF, pulled once per machine, or a clean skip.

The file is pulled with parrot's own `pull` into a cache under the system temp folder
(kept between sessions so tests do not download it again); without network the tests
that need it are skipped with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from shared_paths import REFERENCES, models_home

from parrot.errors import ParrotError


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    from parrot.hub.pull import pull

    try:
        return pull("smollm2-135m-instruct", models_home())
    except ParrotError as err:
        pytest.skip(f"SmolLM2 GGUF unavailable: {err.message}")


@pytest.fixture(scope="session")
def smollm2_gguf(smollm2_path):
    from parrot.hub.gguf import read_gguf

    return read_gguf(smollm2_path)


@pytest.fixture(scope="session")
def smollm2(smollm2_path):
    from parrot.hub.gguf_model import load_gguf

    torch.set_num_threads(2)
    return load_gguf(smollm2_path)


@pytest.fixture(scope="session")
def smollm2_reference() -> dict:
    path = REFERENCES / "smollm2-135m-instruct-q4_1.json"
    if not path.is_file():
        pytest.skip(f"llama.cpp references not found at {path}")
    return json.loads(path.read_text(encoding="utf-8"))
