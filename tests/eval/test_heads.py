"""Head importance is the gate gradient (checked by finite differences); ablation and
pruning agree with masking."""

import pytest
import torch
from torch import nn

from parrot.adapt.prune import heads_to_keep, prune_heads
from parrot.errors import ParrotError
from parrot.eval.heads import (
    analyze_heads,
    head_importance,
    head_shape,
    masked_loss,
    spearman,
    text_windows,
)
from parrot.model import ModelConfig, Transformer


def _model(dtype=torch.float64, **changes) -> Transformer:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=50, context_length=16, d_model=32, n_layers=2, n_heads=4,
                      positions="rope", norm="rmsnorm", mlp="swiglu", bias=False, **changes)
    return Transformer(cfg).to(dtype).eval()


def _model64() -> Transformer:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=50, context_length=16, d_model=32, n_layers=2, n_heads=4,
                      positions="learned", norm="layernorm", mlp="gelu", bias=True)
    return Transformer(cfg).to(torch.float64).eval()


def _windows(n=3, length=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 50, (n, length + 1), generator=g)


def _loss64(model, windows, xi):
    """The gated loss in float64 end to end (the model's logits() rounds to float32)."""
    logits = model.lm_head(model.hidden(windows[:, :-1], head_mask=xi))
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), windows[:, 1:].flatten())


def test_importance_equals_finite_differences_of_the_gated_loss():
    # LayerNorm and learned positions: RMSNorm and RoPE round through float32 by design.
    model = _model64()
    windows = _windows(n=1)
    importance, _ = head_importance(model, windows)
    eps = 1e-6
    for layer, head in [(0, 0), (0, 3), (1, 2)]:
        plus, minus = torch.ones(2, 4, dtype=torch.float64), torch.ones(2, 4, dtype=torch.float64)
        plus[layer, head] += eps
        minus[layer, head] -= eps
        with torch.no_grad():
            slope = (_loss64(model, windows, plus) - _loss64(model, windows, minus)) / (2 * eps)
        assert importance[layer, head].item() == pytest.approx(abs(slope.item()), rel=1e-4)


def test_ablation_is_the_loss_change_of_one_gated_off_head():
    model, windows = _model(), _windows()
    report = analyze_heads(model, windows)
    xi = torch.ones(2, 4)
    xi[1, 1] = 0
    with torch.no_grad():
        expected = masked_loss(model, windows, xi) - masked_loss(model, windows, torch.ones(2, 4))
    assert report.ablation[1, 1].item() == pytest.approx(expected.item(), abs=1e-9)
    assert report.importance.shape == (2, 4) and report.tokens == 3 * 12


@pytest.mark.parametrize(("kv", "unit", "fraction"), [(None, "group", 0.5), (2, "group", 0.5),
                                                       (2, "query", 0.5), (1, "query", 0.25)])
def test_removing_heads_equals_masking_them(kv, unit, fraction):
    model, windows = _model(n_kv_heads=kv), _windows()
    importance = torch.rand(2, 4, generator=torch.Generator().manual_seed(1))
    keep = heads_to_keep(model.config, importance, fraction, unit)
    xi = torch.zeros(2, 4, dtype=torch.float64)
    for layer, heads in enumerate(keep):
        xi[layer, heads] = 1.0
    pruned = prune_heads(model, keep).to(torch.float64)
    with torch.no_grad():
        expected = model(windows, head_mask=xi)
        got = pruned(windows)
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=0)
    assert pruned.config.n_heads == len(keep[0]) < 4
    assert pruned.num_parameters() < model.num_parameters()


def test_group_pruning_drops_whole_kv_groups_by_summed_importance():
    model = _model(n_kv_heads=2)
    importance = torch.tensor([[5.0, 5.0, 1.0, 1.0], [0.0, 1.0, 9.0, 0.0]])
    keep = heads_to_keep(model.config, importance, 0.5, "group")
    assert keep == [[0, 1], [2, 3]]
    assert prune_heads(model, keep).config.kv_heads == 1


def test_query_pruning_keeps_every_kv_head():
    model = _model(n_kv_heads=2)
    importance = torch.tensor([[5.0, 1.0, 1.0, 2.0], [0.0, 1.0, 9.0, 0.0]])
    keep = heads_to_keep(model.config, importance, 0.5, "query")
    assert keep == [[0, 3], [1, 2]]
    assert prune_heads(model, keep).config.kv_heads == 2


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.2, 1.5])
def test_a_fraction_outside_zero_one_is_refused(fraction):
    with pytest.raises(ParrotError, match="strictly between 0 and 1"):
        heads_to_keep(_model().config, torch.ones(2, 4), fraction)


def test_a_fraction_that_removes_no_group_says_which_fractions_work():
    with pytest.raises(ParrotError, match="choose a fraction between 0.50 and 0.50"):
        heads_to_keep(_model(n_kv_heads=2).config, torch.ones(2, 4), 0.1, "group")


def test_a_model_without_attention_heads_is_refused():
    with pytest.raises(ParrotError, match="no decoder attention heads"):
        head_shape(nn.GRU(4, 4))


def test_too_little_text_for_one_window_is_refused():
    with pytest.raises(ParrotError, match="at least 13"):
        text_windows(list(range(10)), 12, 4)


def test_spearman_of_a_tensor_with_itself_is_one_and_with_its_negation_minus_one():
    x = torch.randn(3, 4)
    assert spearman(x, x) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
