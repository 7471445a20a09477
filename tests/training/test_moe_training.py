"""Training mixture-of-experts models: balancing in the loop, expert-load metrics and
picture, bit-exact resume with the loss-free bias, and the CLI's error for a bad top-k."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import SMALL, parrot, write_text

from parrot.cli import main
from parrot.model import ModelConfig, Transformer
from parrot.model.moe import moe_layers
from parrot.training.balance import moe_row
from parrot.training.objectives import next_token, next_token_loss
from parrot.training.runner import train
from parrot.viz.experts import load_history
from parrot.viz.report import RunPictures

FAST = [s for s in SMALL if s != "--set"] + ["train.steps=12", "train.eval_every=6",
                                              "train.checkpoint_every=6", "log_every=3"]


def _rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _losses(run):
    rows = _rows(run)
    return ([(r["step"], r["loss"], r["grad_norm"]) for r in rows if "loss" in r],
            [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r])


def test_loss_free_run_logs_loads_moves_the_bias_and_draws_experts_png(tmp_path):
    data = write_text(tmp_path / "text.txt")
    run = tmp_path / "run"
    result = train("moe-tiny", run, data=[data], show_progress=False, hooks=[RunPictures()],
                   overrides=[*FAST, "model.moe_balance=loss_free",
                              "model.moe_bias_rate=0.01"])
    assert result.steps == 12 and math.isfinite(result.final_val_loss)
    steps, loads = load_history(_rows(run))
    assert steps == [3, 6, 9, 12]
    for row in loads:
        assert len(row) == 2 and all(len(layer) == 8 for layer in row)
        assert all(abs(sum(layer) - 1) < 1e-4 for layer in row)
    entropies = [r["load_entropy"] for r in _rows(run) if "load_entropy" in r]
    assert all(0 < h <= math.log(8) + 1e-9 for layers in entropies for h in layers)
    assert (run / "experts.png").stat().st_size > 1000 and (run / "loss.png").exists()
    weights = load_file(str(run / "model.safetensors"))
    bias = weights["blocks.0.mlp.balance_bias"]
    # 12 steps of +-0.01 moves: the bias is on a 0.01 grid, not all zero.
    assert bias.abs().max() > 0 and torch.allclose(bias * 100, (bias * 100).round(), atol=1e-4)


def test_aux_loss_reaches_metrics_jsonl(tmp_path):
    run = tmp_path / "run"
    train("moe-tiny", run, data=[write_text(tmp_path / "text.txt")], show_progress=False,
          overrides=[*FAST, "train.steps=3", "model.moe_balance=aux_loss"])
    rows = [r for r in _rows(run) if "loss" in r]
    assert rows and all(0 < r["aux_loss"] < r["loss"] for r in rows)


def test_dense_runs_log_no_expert_fields(tmp_path):
    model = Transformer(ModelConfig(n_layers=1))
    assert moe_row(model) == {}


def test_aux_loss_objective_adds_the_balance_term_in_training_only():
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=64, context_length=16, d_model=32, n_layers=2, n_heads=4,
                      n_experts=4, experts_per_token=2, moe_balance="aux_loss", moe_aux_coef=0.1)
    model = Transformer(cfg).train()
    batch = torch.randint(0, 64, (3, 17))
    loss, metrics = next_token(model, batch)
    ce = next_token_loss(model(batch[:, :-1]), batch[:, 1:])
    # per layer ~ alpha at balance, so two layers ~ 0.2
    assert 0.15 < float(metrics["aux_loss"]) < 0.4
    torch.testing.assert_close(loss.detach(), ce.detach() + metrics["aux_loss"])
    model.eval()
    loss, metrics = next_token(model, batch)
    assert "aux_loss" not in metrics


class Crash(Exception):
    """Stands in for kill -9: the process dies between two steps."""


def test_crash_and_resume_of_a_loss_free_moe_run_is_bit_exact(tmp_path, monkeypatch):
    import parrot.training.loop as loop_module

    data = write_text(tmp_path / "text.txt")
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    sets = [*FAST, "train.steps=12", "train.checkpoint_every=4", "log_every=1",
            "model.moe_balance=loss_free", "model.moe_bias_rate=0.01"]
    train("moe-tiny", whole, data=[data], overrides=sets, show_progress=False)

    def log_then_die(loop, row):
        original(loop, row)
        if row.get("step") == 7 and "loss" in row:
            raise Crash

    original = loop_module.log
    monkeypatch.setattr(loop_module, "log", log_then_die)
    with pytest.raises(Crash):  # dies after step 7; the last checkpoint is step 4's
        train("moe-tiny", broken, data=[data], overrides=sets, show_progress=False)
    monkeypatch.setattr(loop_module, "log", original)
    train("moe-tiny", broken, resume=True, show_progress=False)
    assert _losses(broken) == _losses(whole)  # exact float equality, every step
    loads = [(r["step"], r["expert_load"]) for r in _rows(whole) if "expert_load" in r]
    assert [(r["step"], r["expert_load"]) for r in _rows(broken) if "expert_load" in r] == loads
    a = load_file(str(whole / "model.safetensors"))
    b = load_file(str(broken / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["blocks.1.mlp.balance_bias"].abs().max() > 0


def test_top_k_above_the_expert_count_is_one_clear_sentence(tmp_path, capsys):
    code = main(["train", "--preset", "moe-tiny", "--set", "model.experts_per_token=9",
                 "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "experts_per_token (9)" in err and "n_experts (8)" in err
    result = parrot("train", "--preset", "moe-tiny", "--set", "model.experts_per_token=9",
                    "--out", str(tmp_path / "s"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert not (tmp_path / "s").exists()


def test_moe_layers_found_in_the_trained_run_model(tmp_path):
    from parrot.rundir import load_model

    data = write_text(tmp_path / "text.txt")
    run = tmp_path / "run"
    train("moe-tiny", run, data=[data], show_progress=False,
          overrides=[*FAST, "train.steps=3", "train.checkpoint_every=3"])
    model, _, cfg = load_model(run)
    assert cfg.is_moe and len(moe_layers(model)) == 2
