"""A run killed with kill -9 and resumed logs the same loss curve as an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

from train_helpers import SMALL, parrot, write_text

STEPS = ["--set", "train.steps=24", "--set", "train.checkpoint_every=5",
         "--set", "train.eval_every=10"]


def _losses(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return ([(r["step"], r["loss"], r["grad_norm"]) for r in rows if "loss" in r],
            [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r])


def _kill_after_step(args, run, step):
    """Start a training process and kill -9 it once it has logged `step` (past a checkpoint)."""
    proc = subprocess.Popen([sys.executable, "-m", "parrot", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        metrics = run / "metrics.jsonl"
        if metrics.exists() and f'"step": {step},' in metrics.read_text():
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    return proc.returncode


def test_kill_9_and_resume_reproduce_the_uninterrupted_loss_curve_bit_for_bit(tmp_path):
    data = write_text(tmp_path / "text.txt")
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    common = ["train", "--preset", "tiny", "--data", str(data), *SMALL, *STEPS, "--quiet"]
    assert parrot(*common, "--out", str(whole)).returncode == 0

    rc = _kill_after_step([*common, "--out", str(broken)], broken, step=8)
    assert rc == -signal.SIGKILL, "the run finished before it could be killed"
    killed_train, _ = _losses(broken)
    assert 8 <= killed_train[-1][0] < 24  # it died mid-run, after the step-5 checkpoint

    resumed = parrot("train", "--preset", "tiny", "--out", str(broken), "--resume", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert _losses(broken) == _losses(whole)  # exact float equality, every step
    assert len(_losses(whole)[0]) == 24
