"""Bradley–Terry, DPO (sigmoid, cDPO, IPO), log-probs and KL against float64 formulas."""

from __future__ import annotations

import math

import pytest
import torch
from pref_helpers import byte_chat_tokenizer, make_base

from parrot.data.preference import collate_pairs, encode_preferences, record_to_pair
from parrot.errors import ParrotError
from parrot.rundir import load_model
from parrot.training import logprobs as lp
from parrot.training.objectives_pref import (
    DPOConfig,
    bradley_terry_loss,
    dpo_loss,
    dpo_metrics,
    make_dpo_objective,
)


def log_sigmoid64(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x > 0 else x - math.log1p(math.exp(x))


def four(n: int = 6, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [-30 * torch.rand(n, generator=g) for _ in range(4)]


def test_bradley_terry_equals_the_formula():
    rw, rl = torch.randn(7), torch.randn(7)
    expected = -sum(log_sigmoid64(float(a - b)) for a, b in zip(rw, rl, strict=True)) / 7
    assert bradley_terry_loss(rw, rl).item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("beta, eps", [(0.1, 0.0), (0.5, 0.0), (0.1, 0.2)])
def test_dpo_sigmoid_and_cdpo_equal_the_formula(beta, eps):
    pc, pr, rc, rr = four()
    expected = 0.0
    for i in range(6):
        z = beta * ((float(pc[i]) - float(rc[i])) - (float(pr[i]) - float(rr[i])))
        expected += -(1 - eps) * log_sigmoid64(z) - eps * log_sigmoid64(-z)
    got = dpo_loss(pc, pr, rc, rr, DPOConfig(beta, "sigmoid", eps))
    assert got.item() == pytest.approx(expected / 6, abs=1e-5)


def test_ipo_equals_the_formula_on_per_token_log_ratios():
    pc, pr, rc, rr = four()
    nc, nr = torch.tensor([3., 5, 1, 8, 2, 4]), torch.tensor([6., 2, 2, 3, 9, 1])
    beta, expected = 0.3, 0.0
    for i in range(6):
        z = (float(pc[i]) - float(rc[i])) / float(nc[i]) - (float(pr[i]) - float(rr[i])) / float(nr[i])
        expected += (z - 1 / (2 * beta)) ** 2
    got = dpo_loss(pc, pr, rc, rr, DPOConfig(beta, "ipo"), nc, nr)
    assert got.item() == pytest.approx(expected / 6, rel=1e-5)


def test_dpo_metrics_carry_trl_names_and_values():
    pc, pr, rc, rr = four()
    m = dpo_metrics(pc, pr, rc, rr, 0.1)
    chosen = [0.1 * (float(a) - float(b)) for a, b in zip(pc, rc, strict=True)]
    rejected = [0.1 * (float(a) - float(b)) for a, b in zip(pr, rr, strict=True)]
    assert m["rewards/chosen"].item() == pytest.approx(sum(chosen) / 6, abs=1e-5)
    assert m["rewards/rejected"].item() == pytest.approx(sum(rejected) / 6, abs=1e-5)
    assert m["rewards/margins"].item() == pytest.approx((sum(chosen) - sum(rejected)) / 6, abs=1e-5)
    assert m["rewards/accuracies"].item() == sum(c > r for c, r in zip(chosen, rejected,
                                                                     strict=True)) / 6
    assert m["logps/chosen"].item() == pytest.approx(float(pc.double().mean()), abs=1e-5)
    assert m["logps/rejected"].item() == pytest.approx(float(pr.double().mean()), abs=1e-5)


def test_sequence_logprobs_equal_a_float64_loop():
    logits, labels = torch.randn(2, 5, 11), torch.randint(0, 11, (2, 5))
    mask = torch.tensor([[0, 1, 1, 0, 1], [1, 1, 0, 0, 0]], dtype=torch.float32)
    got = lp.sequence_logprobs(logits, labels, mask)
    for b in range(2):
        want = sum(float(torch.log_softmax(logits[b, t].double(), -1)[labels[b, t]])
                   for t in range(5) if mask[b, t])
        assert got[b].item() == pytest.approx(want, abs=1e-5)


def test_sequence_kl_equals_the_formula_and_is_zero_against_itself():
    p, q = torch.randn(2, 4, 7), torch.randn(2, 4, 7)
    mask = torch.tensor([[1, 1, 0, 1], [0, 1, 1, 1]], dtype=torch.float32)
    got = lp.sequence_kl(p, q, mask)
    for b in range(2):
        want = 0.0
        for t in range(4):
            if mask[b, t]:
                a, c = torch.softmax(p[b, t].double(), -1), torch.softmax(q[b, t].double(), -1)
                want += float((a * (a.log() - c.log())).sum())
        assert got[b].item() == pytest.approx(want, abs=1e-5)
    assert lp.sequence_kl(p, p, mask).abs().max().item() < 1e-6


@pytest.mark.parametrize("beta", [0.0, -0.1])
def test_beta_must_be_positive(beta):
    with pytest.raises(ParrotError, match="--beta must be positive"):
        DPOConfig(beta=beta)


def tiny_pairs(n: int = 4) -> list:
    records = [{"prompt": f"q{i}", "chosen": f"good {i}!", "rejected": f"bad {i}"} for i in range(n)]
    return encode_preferences([record_to_pair(r, "x") for r in records], byte_chat_tokenizer(),
                              "chatml", 64)


def test_at_initialisation_the_dpo_loss_is_log_2_and_rewards_are_zero(tmp_path):
    model = load_model(make_base(tmp_path / "base"))[0]
    pairs = tiny_pairs()
    ref = lp.compute_reference(model, pairs)
    loss, metrics = make_dpo_objective(DPOConfig(beta=0.5))(model, collate_pairs(pairs, ref))
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6)
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins"):
        assert abs(metrics[key].item()) < 1e-6


def test_reference_log_probs_are_cached_and_reused(tmp_path, monkeypatch):
    model = load_model(make_base(tmp_path / "base"))[0]
    pairs = tiny_pairs()
    first = lp.reference_logprobs(model, pairs, tmp_path / "cache")
    files = list((tmp_path / "cache").iterdir())
    assert len(files) == 1 and files[0].name.startswith("ref-")  # no temporary left behind

    def no_model(*args, **kwargs):
        raise AssertionError("the cached values should have been read")

    monkeypatch.setattr(lp, "compute_reference", no_model)
    assert torch.equal(lp.reference_logprobs(model, pairs, tmp_path / "cache"), first)
    assert first.shape == (4, 2)
    batch = collate_pairs(pairs)
    assert torch.allclose(first.T.reshape(-1), lp.batch_logprobs(model, batch), atol=1e-5)


def test_the_reward_is_read_at_the_last_real_token_whatever_the_padding(tmp_path):
    from parrot.model.reward import RewardModel

    torch.manual_seed(0)
    model = RewardModel(load_model(make_base(tmp_path / "base"))[0]).eval()
    tokens = torch.randint(0, 250, (1, 9))
    padded = torch.cat([tokens, torch.zeros(1, 5, dtype=torch.long)], dim=1)
    alone = model(tokens, torch.tensor([9]))
    with torch.no_grad():
        want = model.head(model.backbone.hidden(tokens)[:, -1]).squeeze(-1)
    torch.testing.assert_close(model(padded, torch.tensor([9])), alone)
    torch.testing.assert_close(alone, want)
