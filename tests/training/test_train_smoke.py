"""Training smoke test: the tiny preset on the embedded corpus learns more than unigrams."""

import json

import numpy as np
import torch

from parrot.training.runner import train


def unigram_entropy(ids: np.ndarray) -> float:
    """H = -sum_v p(v) ln p(v) over the token frequencies: the best loss without context."""
    counts = np.bincount(np.asarray(ids, dtype=np.int64)).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def test_tiny_preset_drives_validation_loss_well_below_the_unigram_entropy(tmp_path):
    threads = torch.get_num_threads()
    try:
        result = train("tiny", tmp_path / "run", overrides=["train.threads=1"],
                       show_progress=False)
    finally:
        torch.set_num_threads(threads)
    entropy = unigram_entropy(np.load(tmp_path / "run" / "data" / "train.npy"))
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    first_val = next(r["val_loss"] for r in rows if "val_loss" in r)
    print(f"unigram entropy {entropy:.3f}, val loss {first_val:.3f} -> {result.final_val_loss:.3f}")
    assert result.final_val_loss < entropy - 1.0
    assert result.final_val_loss < first_val
