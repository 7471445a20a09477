"""kill -9 at random moments (start-up, training, evaluation, checkpoint writes), resume
each time: pretraining and LoRA fine-tuning end bit-identical to an uninterrupted run
(benchmarks/kill_resume.py does it 20 times per kind)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


@pytest.mark.slow
def test_random_kill_9s_then_resume_equal_the_uninterrupted_run_bit_for_bit():
    from kill_resume import main

    results = main(["--kills", "2", "--seed", "1", "--no-write"])
    for name, r in results.items():
        assert r["kills"] == 2, name
        assert r["rows_equal"] and r["tensors_equal"], (name, r["kill_log"])
