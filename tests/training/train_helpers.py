"""Shared pieces of the training tests: a small deterministic text and CLI runners."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

WORDS = ("the quick brown fox jumps over a lazy dog while seven wizards quietly hum "
         "jovial tunes about rivers mountains and old kings").split()

# Small, fast settings shared by the CLI tests: byte tokenizer, a 2-layer model.
SMALL = [
    "--set", "data.tokenizer=bytes", "--set", "model.d_model=32", "--set", "model.n_layers=2",
    "--set", "model.context_length=16", "--set", "train.batch_size=4", "--set", "log_every=1",
    "--set", "train.warmup=3", "--set", "train.eval_iters=2", "--set", "train.threads=1",
]


def write_text(path: Path, n_words: int = 4000, seed: int = 0) -> Path:
    rng = random.Random(seed)
    lines = [" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(n_words // 12)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def parrot(*args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    """Run `python -m parrot ARGS` in a fresh process."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "parrot", *args], capture_output=True,
                          text=True, env=full_env, **kwargs)
