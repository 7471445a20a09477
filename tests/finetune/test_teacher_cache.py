"""Teacher logits cached on disk: the top-k formula, reuse without the teacher, same loss."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import make_base
from test_distill import write_text

import parrot.training.distill as distill_module
from parrot.training.distill import DistillConfig, distill, soft_kl
from parrot.training.teacher_cache import top_k_kl, top_k_targets

STEPS = 6
TRAIN = [f"train.{knob}" for knob in (f"steps={STEPS}", "batch_size=3", "warmup=1",
                                      "eval_every=3", "eval_iters=2", "checkpoint_every=2",
                                      "log_every=1", "threads=1", "seq_len=16")]
CFG = DistillConfig(temperature=2.0, alpha=0.5, top_k=8)


def test_top_k_kl_with_every_id_is_the_exact_kl():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 3, 10), torch.randn(2, 3, 10)
    targets = top_k_targets(teacher, 10, 2.0)
    exact = soft_kl(student, teacher, 2.0)
    torch.testing.assert_close(top_k_kl(student, *targets, 2.0), exact, atol=2e-3, rtol=0)


def test_tail_of_one_id_is_exact_and_longer_tails_bound_the_kl_from_below():
    torch.manual_seed(1)
    student, teacher = torch.randn(4, 8), torch.randn(4, 8)
    exact = soft_kl(student, teacher, 1.5)
    one_left = top_k_kl(student, *top_k_targets(teacher, 7, 1.5), 1.5)
    torch.testing.assert_close(one_left, exact, atol=2e-3, rtol=0)
    for k in (1, 3, 5):
        assert float(top_k_kl(student, *top_k_targets(teacher, k, 1.5), 1.5)) <= float(exact)


def test_top_k_kl_hand_computed():
    # Teacher logits [ln 4, ln 2, ln 1, ln 1] at T = 1: q = [1/2, 1/4, 1/8, 1/8]; k = 2 keeps
    # the head [1/2, 1/4] and a tail of mass 1/4. Student uniform: 1/4 each, tail 1/2.
    teacher = torch.tensor([[math.log(4.0), math.log(2.0), 0.0, 0.0]])
    log_q, ids, log_tail = top_k_targets(teacher, 2, 1.0)
    assert ids.tolist() == [[0, 1]] and float(log_tail.exp()) == pytest.approx(0.25)
    expected = 0.5 * math.log(0.5 / 0.25) + 0.25 * math.log(1.0) + 0.25 * math.log(0.25 / 0.5)
    got = top_k_kl(torch.zeros(1, 4), log_q, ids, log_tail, 1.0)
    assert float(got) == pytest.approx(expected, abs=1e-3)


def losses(run) -> list:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r.get("loss"), r.get("val_loss")) for r in rows]


def counting_teacher(monkeypatch) -> dict:
    """Count the teacher's forward calls (the teacher is the model resolve_model returns)."""
    calls, real = {"n": 0}, distill_module.resolve_model

    def resolve(spec, device="cpu", **options):
        model, tokenizer, info = real(spec, device, **options)
        model.register_forward_pre_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
        return model, tokenizer, info

    monkeypatch.setattr(distill_module, "resolve_model", resolve)
    return calls


def test_second_run_reads_the_cache_and_trains_identically(tmp_path, monkeypatch):
    teacher, data = make_base(tmp_path / "teacher"), write_text(tmp_path / "text.txt")
    calls = counting_teacher(monkeypatch)
    kw = {"data": [data], "cfg": CFG, "overrides": ["n_layers=1", "d_model=32", *TRAIN],
          "show_progress": False, "teacher_cache": tmp_path / "cache"}
    first = distill(teacher, "gpt-tiny", tmp_path / "one", **kw)
    assert 0 < calls["n"] <= STEPS  # at most one teacher forward per step while filling
    shards = list((tmp_path / "cache").glob("*/shard-*.pt"))
    assert shards and (shards[0].parent / "meta.json").exists()
    calls["n"] = 0
    second = distill(teacher, "gpt-tiny", tmp_path / "two", **kw)
    assert calls["n"] == 0
    assert losses(tmp_path / "one") == losses(tmp_path / "two")
    assert first.final_val_loss == second.final_val_loss


def test_another_teacher_gets_its_own_cache(tmp_path):
    data = write_text(tmp_path / "text.txt")
    kw = {"data": [data], "cfg": CFG, "show_progress": False,
          "overrides": ["n_layers=1", "d_model=32", *TRAIN, "train.steps=1"],
          "teacher_cache": tmp_path / "cache"}
    for seed in (0, 1):
        distill(make_base(tmp_path / f"t{seed}", seed=seed), "gpt-tiny", tmp_path / f"s{seed}",
                **kw)
    assert len([p for p in (tmp_path / "cache").iterdir() if p.is_dir()]) == 2
