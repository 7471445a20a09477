"""A stopped fine-tuning or distillation run, resumed, equals the uninterrupted run bit for bit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import make_base, write_chats
from safetensors.torch import load_file

from parrot.cli import main
from parrot.data.sft import SFTSampler
from parrot.errors import ParrotError
from parrot.training.finetune import FinetuneConfig, finetune

TRAIN = [f"train.{knob}" for knob in ("steps=8", "batch_size=3", "lr=3e-3", "min_lr=3e-4",
                                      "warmup=2", "eval_every=4", "checkpoint_every=2",
                                      "log_every=1", "threads=1")]


def losses(run: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r.get("loss", r.get("val_loss"))) for r in rows]


def weights(run: Path) -> dict[str, torch.Tensor]:
    name = "adapter.safetensors" if (run / "adapter.safetensors").exists() else "model.safetensors"
    return load_file(str(run / name))


def crash_after(monkeypatch, batches: int) -> None:
    """Make the SFT sampler raise on its (batches + 1)-th batch, as a kill would stop it."""
    real, calls = SFTSampler.next, {"n": 0}

    def next_or_die(self):
        calls["n"] += 1
        if calls["n"] > batches:
            raise KeyboardInterrupt("stopped")
        return real(self)

    monkeypatch.setattr(SFTSampler, "next", next_or_die)


@pytest.mark.parametrize("method", ["lora", "soft-prompt", "full"])
def test_resumed_finetune_equals_uninterrupted(tmp_path, monkeypatch, method):
    base, chats = make_base(tmp_path / "base"), write_chats(tmp_path / "chats.jsonl")
    cfg = FinetuneConfig(method=method, rank=4, prompt_tokens=3, dropout=0.1)
    whole = finetune(base, chats, tmp_path / "whole", cfg, TRAIN, show_progress=False)
    with monkeypatch.context() as patch:
        crash_after(patch, 5)  # dies in step 6; the last checkpoint is after step 4
        with pytest.raises(KeyboardInterrupt):
            finetune(base, chats, tmp_path / "cut", cfg, TRAIN, show_progress=False)
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)["step"] == 4
    resumed = finetune(base, chats, tmp_path / "cut", show_progress=False, resume=True)
    assert losses(tmp_path / "cut") == losses(tmp_path / "whole")
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "cut")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.final_val_loss == whole.final_val_loss
    assert resumed.metrics["val_loss_before"] == whole.metrics["val_loss_before"]


def test_adapter_checkpoint_holds_only_the_adapter(tmp_path):
    base, chats = make_base(tmp_path / "base"), write_chats(tmp_path / "chats.jsonl")
    finetune(base, chats, tmp_path / "run", FinetuneConfig(rank=2), TRAIN, show_progress=False)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert state["model"] and all(".lora_" in k for k in state["model"])


def test_resume_without_checkpoint_is_an_error(tmp_path):
    base, chats = make_base(tmp_path / "base"), write_chats(tmp_path / "chats.jsonl")
    with pytest.raises(ParrotError, match="no checkpoint"):
        finetune(base, chats, tmp_path / "nothing", resume=True, show_progress=False)


@pytest.mark.slow  # two CLI runs and a subprocess (~30 s here); the API tests above are fast
def test_cli_run_killed_with_sigkill_resumes_bit_exactly(tmp_path):
    base, chats = make_base(tmp_path / "base"), write_chats(tmp_path / "chats.jsonl")
    command = ["finetune", str(base), "--data", str(chats), "--method", "lora", "--quiet"]
    flags = [*command]
    for knob in ("steps=20", "batch_size=3", "checkpoint_every=3", "eval_every=10", "threads=1"):
        flags += ["--set", f"train.{knob}"]
    assert main([*flags, "--out", str(tmp_path / "whole")]) == 0
    cut = tmp_path / "cut"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    child = subprocess.Popen([sys.executable, "-m", "parrot", *flags, "--out", str(cut)],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        rows = cut / "metrics.jsonl"
        if rows.exists() and any(json.loads(r).get("step", 0) >= 7
                                 for r in rows.read_text().splitlines() if r.strip()):
            break
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)  # mid-run: no chance to write anything more
    child.wait()
    step = torch.load(cut / "checkpoint.pt", weights_only=False)["step"]
    assert 3 <= step < 20
    assert main([*command, "--out", str(cut), "--resume"]) == 0  # with its saved settings
    assert losses(cut) == losses(tmp_path / "whole")
    a, b = weights(tmp_path / "whole"), weights(cut)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("cached", [False, True])
def test_resumed_distill_equals_uninterrupted(tmp_path, monkeypatch, cached):
    from test_distill import write_text

    from parrot.data.batches import WindowSampler
    from parrot.training.distill import DistillConfig, distill
    from parrot.training.teacher_cache import AlignedWindowSampler

    teacher, data = make_base(tmp_path / "teacher"), write_text(tmp_path / "text.txt")
    train = [f"train.{knob}" for knob in ("steps=6", "batch_size=2", "warmup=1", "eval_every=3",
                                          "eval_iters=2", "checkpoint_every=2", "log_every=1",
                                          "threads=1", "seq_len=16")]
    kw = {"data": [data], "cfg": DistillConfig(top_k=8), "show_progress": False,
          "overrides": ["n_layers=1", "d_model=32", *train],
          "teacher_cache": tmp_path / "cache" if cached else None}
    distill(teacher, "gpt-tiny", tmp_path / "whole", **kw)
    sampler = AlignedWindowSampler if cached else WindowSampler
    real, calls = sampler.next, {"n": 0}
    allowed = 3 + (0 if cached else 2)  # validation draws its 2 windows (eval_iters) too

    def next_or_die(self):
        calls["n"] += 1
        if calls["n"] > allowed:
            raise KeyboardInterrupt("stopped")
        return real(self)

    with monkeypatch.context() as patch:
        patch.setattr(sampler, "next", next_or_die)
        with pytest.raises(KeyboardInterrupt):
            distill(teacher, "gpt-tiny", tmp_path / "cut", **kw)
    distill(teacher, "ignored", tmp_path / "cut", show_progress=False, resume=True)
    assert losses(tmp_path / "cut") == losses(tmp_path / "whole")
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)
