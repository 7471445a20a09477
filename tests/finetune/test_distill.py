"""Distillation: the loss on a hand-computed example, the T^2 gradient convention, the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from conftest import make_base

from parrot.cli import main
from parrot.errors import ParrotError
from parrot.model import ModelConfig, Transformer
from parrot.rundir import load_model, save_weights, write_config
from parrot.tokenizer import Tokenizer
from parrot.training.distill import DistillConfig, distillation_loss, soft_kl

T = 2.0
# Teacher logits / T = [ln 3, 0] -> q_t = [3/4, 1/4]; student logits [0, 0] -> q_s = [1/2, 1/2].
TEACHER = torch.tensor([[[2 * math.log(3.0), 0.0]]])
STUDENT = torch.tensor([[[0.0, 0.0]]])
TARGET = torch.tensor([[0]])


def test_soft_kl_hand_computed():
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # 0.130812...
    assert float(soft_kl(STUDENT, TEACHER, T)) == pytest.approx(expected, abs=1e-6)


def test_distillation_loss_hand_computed():
    kl = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    loss, soft, hard = distillation_loss(STUDENT, TEACHER, TARGET, T, alpha=0.25)
    assert float(soft) == pytest.approx(T**2 * kl, abs=1e-6)           # 0.523248
    assert float(hard) == pytest.approx(math.log(2.0), abs=1e-6)        # CE at T = 1
    assert float(loss) == pytest.approx(0.25 * T**2 * kl + 0.75 * math.log(2), abs=1e-6)


def test_t_squared_convention_gives_gradient_t_times_prob_difference():
    student = STUDENT.clone().requires_grad_(True)
    _, soft, _ = distillation_loss(student, TEACHER, TARGET, T, alpha=1.0)
    soft.backward()
    # d(T^2 KL)/dz_s = T (q_s - q_t) = 2 * ([.5, .5] - [.75, .25])
    torch.testing.assert_close(student.grad[0, 0], torch.tensor([-0.5, 0.5]))


def test_alpha_zero_is_plain_cross_entropy():
    torch.manual_seed(0)
    s, t, y = torch.randn(2, 3, 5), torch.randn(2, 3, 5), torch.randint(0, 5, (2, 3))
    loss, _, hard = distillation_loss(s, t, y, 3.0, alpha=0.0)
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(s.flatten(0, 1),
                                                                       y.flatten()))
    assert torch.equal(loss, hard)


@pytest.mark.parametrize("kw", [{"temperature": 0.0}, {"alpha": 1.5}, {"alpha": -0.1}])
def test_bad_settings_are_errors(kw):
    with pytest.raises(ParrotError):
        DistillConfig(**kw)


def write_text(path):
    words = "the parrot speaks while the cat listens and the dog sleeps".split()
    lines = [" ".join(words[(i * 7 + j) % len(words)] for j in range(10)) for i in range(200)]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def test_distill_cli_trains_a_preset_student(tmp_path, capsys):
    teacher = make_base(tmp_path / "teacher")
    data = write_text(tmp_path / "text.txt")
    out = tmp_path / "student"
    code = main(["distill", "--teacher", str(teacher), "--student", "gpt-tiny",
                 "--set", "n_layers=1", "--set", "d_model=32", "--data", str(data),
                 "--temperature", "2", "--alpha", "0.5", "--set", "train.seq_len=32",
                 "--set", "train.steps=4", "--set", "train.batch_size=2",
                 "--set", "train.threads=1", "--set", "train.log_every=1", "--quiet",
                 "--out", str(out)])
    assert code == 0
    assert "validation loss" in capsys.readouterr().out
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(r["loss"] == pytest.approx(0.5 * r["soft"] + 0.5 * r["hard"], rel=1e-5)
               for r in rows if "loss" in r)
    student, tokenizer, cfg = load_model(out)
    assert cfg.n_layers == 1 and cfg.vocab_size == 259


def test_tokenizer_mismatch_exits_2_with_one_sentence(tmp_path):
    teacher = make_base(tmp_path / "teacher")
    student = tmp_path / "student"
    student.mkdir()
    tok = Tokenizer.train([], 256)
    cfg = ModelConfig(vocab_size=256, context_length=32, d_model=16, n_layers=1, n_heads=2)
    tok.save(student)
    save_weights(student, Transformer(cfg))
    write_config(student, {"model": cfg.to_dict()})
    data = write_text(tmp_path / "text.txt")
    result = subprocess.run(
        [sys.executable, "-m", "parrot", "distill", "--teacher", str(teacher), "--student",
         str(student), "--data", str(data), "--set", "train.steps=1", "--quiet", "--out",
         str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "different tokenizers" in result.stderr and "Traceback" not in result.stderr
