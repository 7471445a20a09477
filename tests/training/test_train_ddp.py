"""Two data-parallel processes (torchrun, gloo) train exactly like one with the same batch."""

import json
import os
import subprocess
import sys

import pytest
from train_helpers import SMALL, parrot, write_text

ARGS = ["--set", "train.steps=8", "--set", "train.batch_size=8", "--set", "eval_every=4",
        "--set", "checkpoint_every=4", "--quiet"]


def _rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_processes_equal_one_process_with_the_same_global_batch(tmp_path):
    data = write_text(tmp_path / "text.txt")
    common = ["train", "--preset", "tiny", "--data", str(data), *SMALL, *ARGS]
    single = parrot(*common, "--out", str(tmp_path / "one"))
    assert single.returncode == 0, single.stderr
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    double = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "parrot", *common, "--out", str(tmp_path / "two")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert double.returncode == 0, double.stderr
    one, two = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    assert [r["step"] for r in one] == [r["step"] for r in two]  # rank 0 alone wrote
    for a, b in zip(one, two, strict=True):
        for key in ("loss", "val_loss", "grad_norm"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-5), (a["step"], key)
    assert (tmp_path / "two" / "model.safetensors").is_file()
