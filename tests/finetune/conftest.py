"""A tiny base run directory (byte tokenizer with ChatML specials) for fine-tuning tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from parrot.model import ModelConfig, Transformer
from parrot.rundir import save_weights, write_config
from parrot.tokenizer import Tokenizer

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def byte_chat_tokenizer() -> Tokenizer:
    return Tokenizer.train([], 256 + len(SPECIALS), special_tokens=SPECIALS)


def make_base(root: Path, seed: int = 0, d_model: int = 32) -> Path:
    tok = byte_chat_tokenizer()
    cfg = ModelConfig(vocab_size=tok.vocab_size, context_length=128, d_model=d_model,
                      n_layers=2, n_heads=4, n_kv_heads=2, positions="rope", norm="rmsnorm",
                      mlp="swiglu", bias=False, tie_embeddings=True)
    torch.manual_seed(seed)
    model = Transformer(cfg)
    root.mkdir(parents=True, exist_ok=True)
    tok.save(root)
    save_weights(root, model)
    write_config(root, {"model": cfg.to_dict()})
    return root


def write_chats(path: Path, n: int = 12) -> Path:
    rows = []
    for i in range(n):
        rows.append({"messages": [{"role": "user", "content": f"what is {i}?"},
                                  {"role": "assistant", "content": f"ARR {i}!"}]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def base_dir(tmp_path) -> Path:
    return make_base(tmp_path / "base")


@pytest.fixture
def chats(tmp_path) -> Path:
    return write_chats(tmp_path / "chats.jsonl")
