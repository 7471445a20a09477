"""Seq2seq pairs training stopped mid-run and resumed equals the uninterrupted run."""

from __future__ import annotations

import json
import signal

import pytest
import torch
from safetensors.torch import load_file
from test_train_resume import _kill_after_step
from train_helpers import parrot

from parrot.data.pairs import PairSampler
from parrot.training.seq2seq import train_pairs

SETS = ["model.d_model=32", "model.n_layers=1", "model.encoder_layers=1", "model.n_heads=2",
        "model.dropout=0.1", "train.steps=10", "train.batch_size=4", "train.threads=1",
        "train.checkpoint_every=3", "train.eval_every=5", "train.log_every=1",
        "data.tokenizer=bytes"]


def write_pairs(path):
    path.write_text("".join(json.dumps({"source": f"{i} plus one", "target": str(i + 1)}) + "\n"
                            for i in range(60)), encoding="utf-8")
    return path


def rows(run):
    return [{k: v for k, v in r.items() if not k.endswith("time_s") and k != "tokens_per_s"}
            for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]


def same_run(a, b):
    assert rows(a) == rows(b)  # exact floats: losses, accuracies, grad norms, exact match
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_stopped_and_resumed_pairs_run_equals_the_uninterrupted_one(tmp_path, monkeypatch):
    data = write_pairs(tmp_path / "pairs.jsonl")
    whole = train_pairs("seq2seq-tiny", tmp_path / "whole", data, overrides=SETS,
                        show_progress=False)
    real, calls = PairSampler.next, {"n": 0}

    def next_or_die(self):
        calls["n"] += 1
        if calls["n"] > 7:  # dies in step 8; the last checkpoint is after step 6
            raise KeyboardInterrupt("stopped")
        return real(self)

    with monkeypatch.context() as patch:
        patch.setattr(PairSampler, "next", next_or_die)
        with pytest.raises(KeyboardInterrupt):
            train_pairs("seq2seq-tiny", tmp_path / "cut", data, overrides=SETS,
                        show_progress=False)
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)["step"] == 6
    resumed = train_pairs("seq2seq-tiny", tmp_path / "cut", data, resume=True,
                          show_progress=False)
    same_run(tmp_path / "whole", tmp_path / "cut")
    assert resumed.final_val_loss == whole.final_val_loss
    assert resumed.metrics["val_exact_match"] == whole.metrics["val_exact_match"]


@pytest.mark.slow  # two CLI runs and a killed subprocess
def test_cli_pairs_run_killed_with_sigkill_resumes_bit_exactly(tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl")
    sets = [x for s in [*SETS, "train.steps=30"] for x in ("--set", s)]
    common = ["seq2seq", "train", "--data", str(data), *sets, "--quiet"]
    assert parrot(*common, "--out", str(tmp_path / "whole")).returncode == 0
    rc = _kill_after_step([*common, "--out", str(tmp_path / "cut")], tmp_path / "cut", step=8)
    assert rc == -signal.SIGKILL, "the run finished before it could be killed"
    resumed = parrot(*common[:4], "--out", str(tmp_path / "cut"), "--resume", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    same_run(tmp_path / "whole", tmp_path / "cut")
