"""A tiny base run directory and preference files for the preference-tuning tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from parrot.model import ModelConfig, Transformer
from parrot.rundir import save_weights, write_config
from parrot.tokenizer import Tokenizer

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TRAIN = [f"train.{knob}" for knob in ("steps=6", "batch_size=3", "lr=3e-3", "min_lr=3e-4",
                                      "warmup=1", "eval_every=3", "checkpoint_every=2",
                                      "log_every=1", "threads=1")]


def byte_chat_tokenizer() -> Tokenizer:
    return Tokenizer.train([], 256 + len(SPECIALS), special_tokens=SPECIALS)


def make_base(root: Path, seed: int = 0) -> Path:
    """A 2-layer Llama-shaped decoder with a byte tokenizer and ChatML specials."""
    tok = byte_chat_tokenizer()
    cfg = ModelConfig(vocab_size=tok.vocab_size, context_length=128, d_model=32,
                      n_layers=2, n_heads=4, n_kv_heads=2, positions="rope", norm="rmsnorm",
                      mlp="swiglu", bias=False, tie_embeddings=True)
    torch.manual_seed(seed)
    model = Transformer(cfg)
    root.mkdir(parents=True, exist_ok=True)
    tok.save(root)
    save_weights(root, model)
    write_config(root, {"model": cfg.to_dict()})
    return root


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_prefs(path: Path, n: int = 12) -> Path:
    """Pairs that prefer answers ending in '!' (explicit prompt, strings)."""
    return write_jsonl(path, [{"prompt": f"say {i}", "chosen": f"ARR {i}!",
                               "rejected": f"no {i}."} for i in range(n)])
