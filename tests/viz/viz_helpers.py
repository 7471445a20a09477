"""A small random-weight model saved as a run directory, for the viz tests."""

from __future__ import annotations

from pathlib import Path

import torch

from parrot.model import ModelConfig, Transformer
from parrot.rundir import save_weights, write_config
from parrot.tokenizer import Tokenizer

TEXTS = [
    "the king and the queen walked to the castle. the prince and the princess followed.",
    "a man and a woman met a nephew and a niece at the market in the town.",
    "def main():\n    return the_value_of_the_function\n",
] * 4


def small_tokenizer() -> Tokenizer:
    """A BPE tokenizer with a few dozen merges (so common words become single tokens)."""
    return Tokenizer.train(TEXTS, vocab_size=320)


def small_model(tokenizer: Tokenizer, **overrides: object) -> Transformer:
    """A 2-layer, 4-head model with seeded random weights and the tokenizer's vocabulary."""
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tokenizer.vocab_size, context_length=64, d_model=32,
                      n_layers=2, n_heads=4).replace(**overrides)
    return Transformer(cfg).eval()


def make_run_dir(root: Path, **overrides: object) -> Path:
    """Write config.json, tokenizer.json, model.safetensors and a metrics.jsonl."""
    tokenizer = small_tokenizer()
    model = small_model(tokenizer, **overrides)
    root.mkdir(parents=True, exist_ok=True)
    write_config(root, {"model": model.config.to_dict(), "train": {"steps": 3}})
    tokenizer.save(root)
    save_weights(root, model)
    rows = [{"step": 1, "loss": 5.0, "lr": 1e-3, "grad_norm": 1.5, "tokens_per_s": 100.0},
            {"step": 2, "loss": 4.0, "lr": 2e-3, "grad_norm": 1.2, "tokens_per_s": 120.0},
            {"step": 2, "val_loss": 4.5}]
    (root / "metrics.jsonl").write_text("".join(f"{r}\n".replace("'", '"') for r in rows))
    return root
