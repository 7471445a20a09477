"""The loop's mechanics on a tiny model: accumulation, clipping, bf16, metrics and picture."""

import math

import torch

from parrot.model import ModelConfig, Transformer
from parrot.rundir import RunDir, read_metrics
from parrot.training.config import TrainConfig
from parrot.training.loop import Loop, LoopState, run_loop, train_step
from parrot.training.objectives import next_token
from parrot.training.optim import build_adamw
from parrot.viz.report import RunPictures

CFG = ModelConfig(vocab_size=50, context_length=8, d_model=16, n_layers=1, n_heads=2)


class FixedSampler:
    """Test double: hands out the given batches in turn."""

    def __init__(self, batches, seq_len=8):
        self.batches, self.seq_len, self.i = batches, seq_len, 0

    def next(self):
        batch = self.batches[self.i % len(self.batches)]
        self.i += 1
        return batch

    def state_dict(self):
        return {"i": self.i}


def _loop(batches, **train):
    torch.manual_seed(0)
    model = Transformer(CFG)
    cfg = TrainConfig(**{"steps": 1, "batch_size": 4, "warmup": 0, "lr": 1e-2, **train})
    opt = build_adamw(model, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2))
    return Loop(model, model, opt, FixedSampler(batches), [], cfg, next_token,
                show_progress=False)


def test_accumulated_micro_batches_equal_one_full_batch():
    torch.manual_seed(1)
    full = torch.randint(0, 50, (8, 9))
    one = _loop([full], batch_size=8)
    two = _loop([full[:4], full[4:]], grad_accum=2)
    for loop in (one, two):  # SGD: the update is the gradient itself (Adam amplifies noise)
        loop.optimizer = torch.optim.SGD(loop.raw.parameters(), lr=1.0)
    row_one, row_two = train_step(one, 1e-2), train_step(two, 1e-2)
    assert math.isclose(row_one["loss"], row_two["loss"], rel_tol=1e-5)
    assert math.isclose(row_one["grad_norm"], row_two["grad_norm"], rel_tol=1e-4)
    for a, b in zip(one.raw.parameters(), two.raw.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_clipping_reports_the_norm_before_clipping_and_bounds_the_update():
    batch = torch.randint(0, 50, (4, 9))
    loop = _loop([batch], grad_clip=1e-3)
    norm = train_step(loop, 1e-2)["grad_norm"]
    unclipped = _loop([batch], grad_clip=0.0)
    same_norm = train_step(unclipped, 1e-2)["grad_norm"]
    assert norm > 1e-3 and math.isclose(norm, same_norm, rel_tol=1e-5)


def test_bf16_autocast_trains():
    loop = _loop([torch.randint(0, 50, (4, 9))], bf16=True, steps=3)
    state = run_loop(loop)
    assert state.step == 3 and state.tokens == 3 * 4 * 8


def test_metrics_and_loss_picture_are_written_during_the_run(tmp_path):
    batches = [torch.randint(0, 50, (4, 9)) for _ in range(3)]
    loop = _loop(batches, steps=6, log_every=2, eval_every=3, checkpoint_every=3)
    loop.val_batches = batches[:1]
    loop.run, loop.hooks = RunDir(tmp_path), [RunPictures()]
    run_loop(loop, LoopState())
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows if "loss" in r] == [2, 4, 6]
    assert [r["step"] for r in rows if "val_loss" in r] == [3, 6]
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "model.safetensors").is_file()


def counting_objective(model, batch):
    """next_token plus two metrics: a constant and the batch's first token id."""
    loss, _ = next_token(model, batch)
    return loss, {"seven": torch.tensor(7.0), "first": batch[0, 0].float()}


def test_every_objective_metric_is_averaged_into_the_training_and_validation_rows(tmp_path):
    batches = [torch.full((4, 9), 3), torch.full((4, 9), 5)]
    loop = _loop(batches, steps=2, log_every=1, eval_every=2, grad_accum=2)
    loop.objective, loop.val_batches, loop.run = counting_objective, batches, RunDir(tmp_path)
    run_loop(loop)
    rows = read_metrics(tmp_path)
    train = [r for r in rows if "loss" in r]
    assert [(r["seven"], r["first"]) for r in train] == [(7.0, 4.0), (7.0, 4.0)]
    (val,) = [r for r in rows if "val_loss" in r]
    assert (val["val_seven"], val["val_first"]) == (7.0, 4.0)
