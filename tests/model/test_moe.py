"""Mixture of experts: routing, grouped dispatch against a dense reference, balancing math,
statistics, and cached decoding through the engine."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from parrot.errors import ParrotError
from parrot.model import KVCache, ModelConfig, Transformer
from parrot.model.mlp import MLP
from parrot.model.moe import (
    MoE,
    aux_balance_loss,
    balance_bias_step,
    expert_loads,
    grouped_dispatch,
    load_entropy,
    moe_aux_loss,
    moe_layers,
    top_k_route,
    update_balance_bias,
)

SMALL = dict(vocab_size=48, context_length=32, d_model=32, n_layers=2, n_heads=4)
MOE = dict(n_experts=4, experts_per_token=2)
VARIANTS = {
    "gelu-top2": dict(mlp="gelu"),
    "swiglu-top1": dict(mlp="swiglu", bias=False, experts_per_token=1),
    "no-renorm": dict(mlp="swiglu", moe_renormalize=False, expert_d_ff=24),
    "shared-gated": dict(mlp="swiglu", bias=False, shared_experts=1, shared_d_ff=40,
                         shared_expert_gate=True, moe_renormalize=False),
    "shared-2": dict(mlp="gelu", shared_experts=2),
    "top-all": dict(mlp="relu", experts_per_token=4),
}


def moe_config(**changes) -> ModelConfig:
    return ModelConfig(**{**SMALL, **MOE, **changes})


def dense_reference(layer: MoE, x: torch.Tensor) -> torch.Tensor:
    """Every expert on every token, masked by the routing weights (zero where not chosen),
    written straight from the formulas without the grouped code path."""
    flat = x.reshape(-1, x.shape[-1])
    p = torch.softmax(flat @ layer.router.weight.T, dim=-1)
    scores = p + layer.balance_bias if layer.balance == "loss_free" else p
    chosen = torch.zeros_like(p, dtype=torch.bool)
    chosen.scatter_(1, scores.topk(layer.top_k, dim=-1).indices, True)
    gate = torch.where(chosen, p, torch.zeros_like(p))
    if layer.renormalize:
        gate = gate / gate.sum(-1, keepdim=True)
    out = sum(gate[:, e:e + 1] * expert(flat) for e, expert in enumerate(layer.experts))
    if layer.shared is not None:
        shared = layer.shared(flat)
        if layer.shared_gate is not None:
            shared = torch.sigmoid(flat @ layer.shared_gate.weight.T) * shared
        out = out + shared
    return out.reshape(x.shape)


@pytest.mark.parametrize("variant", VARIANTS)
@torch.no_grad()
def test_grouped_dispatch_equals_dense_reference(variant):
    torch.manual_seed(0)
    # float64: the comparison checks the dispatch, not fp32 summation order.
    layer = MoE(moe_config(**VARIANTS[variant])).double().eval()
    for p in layer.parameters():  # larger weights than the init so routing is not uniform
        p.normal_(0, 0.3)
    x = torch.randn(3, 17, 32, dtype=torch.float64)
    torch.testing.assert_close(layer(x), dense_reference(layer, x), atol=1e-6, rtol=1e-6)


@torch.no_grad()
def test_loss_free_bias_changes_the_choice_but_not_the_weights():
    torch.manual_seed(1)
    layer = MoE(moe_config(moe_balance="loss_free", moe_renormalize=False)).eval()
    x = torch.randn(40, 32)
    layer.balance_bias.copy_(torch.tensor([0.0, 0.0, 0.0, 5.0]))  # forces expert 3 in
    torch.testing.assert_close(layer(x), dense_reference(layer, x), atol=1e-6, rtol=1e-6)
    probs = torch.softmax(layer.router(x), -1)
    weights, indices = top_k_route(probs, layer.balance_bias, 2, renormalize=False)
    assert (indices == 3).any(dim=1).all()
    torch.testing.assert_close(weights, probs.gather(1, indices))  # p, never p + b


def test_top_k_route_worked_example():
    probs = torch.tensor([[0.1, 0.5, 0.3, 0.1], [0.4, 0.1, 0.1, 0.3]])
    weights, indices = top_k_route(probs, None, 2, renormalize=True)
    assert indices[0].tolist() == [1, 2]
    torch.testing.assert_close(weights[0], torch.tensor([0.625, 0.375]))
    weights, _ = top_k_route(probs, None, 2, renormalize=False)
    torch.testing.assert_close(weights[0], torch.tensor([0.5, 0.3]))
    bias = torch.tensor([0.0, -1.0, 0.0, 0.0])
    _, indices = top_k_route(probs, bias, 1, renormalize=False)
    assert indices[:, 0].tolist() == [2, 0]


def test_each_expert_runs_once_on_exactly_its_tokens():
    torch.manual_seed(2)
    layer = MoE(moe_config(n_experts=8, experts_per_token=2))
    seen: list[int] = []
    for expert in layer.experts:
        expert.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0]))
    x = torch.randn(2, 30, 32)
    layer(x)
    assert sum(seen) == 60 * 2  # N * k rows in total, not N * E
    assert len(seen) <= 8 and layer.last_load.sum() == 120


def test_grouped_dispatch_gradients_match_dense():
    torch.manual_seed(3)
    layer = MoE(moe_config(mlp="swiglu", bias=False)).double()
    for p in layer.parameters():
        p.data.normal_(0, 0.3)
    x = torch.randn(25, 32, dtype=torch.float64)
    layer(x).square().sum().backward()
    grouped = [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()
    dense_reference(layer, x).square().sum().backward()
    for a, p in zip(grouped, layer.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad, atol=1e-9, rtol=1e-9)


def test_grouped_dispatch_handles_experts_with_no_tokens():
    experts = torch.nn.ModuleList(MLP(ModelConfig(d_model=8, d_ff=16)) for _ in range(3))
    x = torch.randn(5, 8)
    indices = torch.zeros(5, 1, dtype=torch.long)
    out = grouped_dispatch(x, indices, torch.ones(5, 1), experts)
    torch.testing.assert_close(out, experts[0](x))


def test_aux_loss_is_alpha_when_balanced_and_alpha_n_when_collapsed():
    n, alpha = 4, 0.01
    uniform = torch.full((8, n), 1 / n)
    spread = torch.tensor([[0, 1], [2, 3]] * 4)
    assert math.isclose(float(aux_balance_loss(uniform, spread, alpha)), alpha, rel_tol=1e-6)
    collapsed = F.one_hot(torch.zeros(8, dtype=torch.long), n).float()
    all_on_zero = torch.zeros(8, 1, dtype=torch.long)
    assert math.isclose(float(aux_balance_loss(collapsed, all_on_zero, alpha)), alpha * n,
                        rel_tol=1e-6)


def test_aux_loss_reaches_the_router_and_objective_sees_it():
    torch.manual_seed(4)
    model = Transformer(ModelConfig(**SMALL, **MOE, moe_balance="aux_loss")).train()
    model(torch.randint(0, 48, (2, 10)))
    aux = moe_aux_loss(model)
    assert aux is not None and float(aux.detach()) > 0
    aux.backward()
    assert model.blocks[0].mlp.router.weight.grad.abs().sum() > 0
    model.eval()
    model(torch.randint(0, 48, (2, 10)))
    assert moe_aux_loss(model) is None  # evaluation reports plain losses


def test_balance_bias_step_moves_towards_the_mean():
    bias = torch.zeros(4)
    new = balance_bias_step(bias, torch.tensor([10.0, 2.0, 5.0, 3.0]), 0.1)  # mean 5
    torch.testing.assert_close(new, torch.tensor([-0.1, 0.1, 0.0, 0.1]))


def test_load_entropy_bounds():
    assert math.isclose(load_entropy(torch.ones(8)), math.log(8), rel_tol=1e-12)
    assert load_entropy(torch.tensor([5.0, 0, 0, 0])) == 0.0
    assert 0 < load_entropy(torch.tensor([3.0, 1.0])) < math.log(2)


def test_update_balance_bias_uses_the_step_load_only_for_loss_free():
    torch.manual_seed(5)
    for balance, moves in (("loss_free", True), ("aux_loss", False), ("none", False)):
        model = Transformer(ModelConfig(**SMALL, **MOE, moe_balance=balance,
                                        moe_bias_rate=0.01)).train()
        model(torch.randint(0, 48, (2, 12)))
        model(torch.randint(0, 48, (2, 12)))  # two micro-batches accumulate
        step_load = [layer.step_load.clone() for layer in moe_layers(model)]
        assert all(float(s.sum()) == 2 * 24 * 2 for s in step_load)
        update_balance_bias(model)
        for layer, load in zip(moe_layers(model), step_load, strict=True):
            expected = 0.01 * torch.sign(load.mean() - load) if moves else torch.zeros(4)
            torch.testing.assert_close(layer.balance_bias, expected)
            assert layer.step_load is None


def test_expert_loads_are_fractions_over_the_window_and_reset():
    torch.manual_seed(6)
    model = Transformer(moe_config()).train()
    model(torch.randint(0, 48, (2, 12)))
    loads = expert_loads(model)
    assert len(loads) == 2
    for load in loads:
        assert math.isclose(float(load.sum()), 1.0, rel_tol=1e-6)
    assert all(layer.window_load is None for layer in moe_layers(model))


def test_names_state_dict_and_plain_models():
    model = Transformer(moe_config(mlp="swiglu", shared_experts=1, shared_expert_gate=True))
    names = set(model.state_dict())
    for name in ("blocks.1.mlp.router.weight", "blocks.1.mlp.experts.3.gate_proj.weight",
                 "blocks.1.mlp.experts.0.down_proj.weight", "blocks.0.mlp.shared.up_proj.weight",
                 "blocks.0.mlp.shared_gate.weight", "blocks.0.mlp.balance_bias"):
        assert name in names
    dense = Transformer(ModelConfig(**SMALL))
    assert not moe_layers(dense) and "blocks.0.mlp.up_proj.weight" in dense.state_dict()


def test_too_many_experts_per_token_is_a_clear_error():
    with pytest.raises(ParrotError, match="experts_per_token"):
        moe_config(experts_per_token=9)


@torch.no_grad()
def test_cached_decode_equals_recompute_with_kv_cache():
    torch.manual_seed(7)
    model = Transformer(moe_config(positions="rope", norm="rmsnorm", mlp="swiglu",
                                   bias=False, shared_experts=1)).eval()
    sequence = [3, 17, 5, 9, 30]
    cache = KVCache(model.config, batch_size=1, max_len=20)
    logits = model(torch.tensor([sequence]), cache=cache)
    for _ in range(8):
        sequence.append(int(logits[0, -1].argmax()))
        position = torch.tensor([[len(sequence) - 1]])
        logits = model(torch.tensor([sequence[-1:]]), positions=position, cache=cache)
        full = model(torch.tensor([sequence]))[0, -1]
        torch.testing.assert_close(logits[0, -1], full, atol=1e-5, rtol=1e-5)


def test_engine_generates_from_a_moe_model_like_recompute():
    from parrot.infer import Engine, SamplingParams
    from parrot.tokenizer import Tokenizer

    torch.manual_seed(8)
    cfg = ModelConfig(vocab_size=256, context_length=48, d_model=32, n_layers=2, n_heads=4,
                      positions="rope", mlp="swiglu", bias=False, n_experts=4,
                      experts_per_token=2, moe_balance="loss_free")
    model = Transformer(cfg).eval()
    for layer in moe_layers(model):
        layer.balance_bias.normal_(0, 0.01)
    engine = Engine(model, Tokenizer.train([], 256), max_batch=2)
    params = SamplingParams(temperature=0.0, max_new_tokens=8, ignore_eos=True)
    for done in engine.generate_batch(["moe", "experts route"], params, record_logits=True):
        ids = done.prompt_ids + done.token_ids
        with torch.no_grad():
            full = model(torch.tensor([ids]))[0, len(done.prompt_ids) - 1:-1]
        torch.testing.assert_close(done.logits, full, atol=1e-4, rtol=1e-4)
