"""Position encodings against their formulas: sinusoidal table, RoPE, ALiBi slopes."""

from __future__ import annotations

import math

import pytest
import torch
from naive_transformer import paper_alibi_slopes, rotation

from parrot.model import Transformer, get_preset
from parrot.model.positions import (
    alibi_bias,
    alibi_slopes,
    apply_rope,
    rope_angles,
    rope_frequencies,
    rope_lookup,
    rope_table,
    sinusoidal_table,
)


def test_sinusoidal_table_matches_the_formula():
    d = 16
    table = sinusoidal_table(50, d)
    for pos in (0, 1, 7, 49):
        for i in range(d // 2):
            angle = pos / 10000 ** (2 * i / d)
            assert table[pos, 2 * i] == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[pos, 2 * i + 1] == pytest.approx(math.cos(angle), abs=1e-6)


def test_rope_frequencies_are_a_geometric_sequence():
    inv = rope_frequencies(8, 10000.0)
    expected = torch.tensor([10000.0 ** (-2 * i / 8) for i in range(4)])
    torch.testing.assert_close(inv, expected)


def rope_at(x: torch.Tensor, pos: int, theta: float = 10000.0) -> torch.Tensor:
    """apply_rope on a single vector x (D,) at one position."""
    cos, sin = rope_angles(torch.tensor([[pos]]), rope_frequencies(x.shape[-1], theta))
    return apply_rope(x.view(1, 1, 1, -1), cos, sin).view(-1)


def test_rope_equals_the_explicit_rotation_matrix():
    x = torch.randn(8, dtype=torch.float64)
    for pos in (0, 3, 100):
        expected = rotation(pos, 8, 10000.0) @ x
        torch.testing.assert_close(rope_at(x.float(), pos).double(), expected,
                                   atol=1e-5, rtol=1e-5)


def test_rope_preserves_the_norm():
    x = torch.randn(16)
    assert float(rope_at(x, 77).norm()) == pytest.approx(float(x.norm()), rel=1e-5)


def test_rope_scores_depend_only_on_the_distance():
    torch.manual_seed(0)
    q, k = torch.randn(16), torch.randn(16)
    for distance in (0, 1, 5, 20):
        scores = [float(rope_at(q, m) @ rope_at(k, m + distance)) for m in (0, 3, 11, 40)]
        assert max(scores) - min(scores) < 1e-4
    # ...and different distances give different scores.
    assert abs(float(rope_at(q, 0) @ rope_at(k, 1)) - float(rope_at(q, 0) @ rope_at(k, 6))) > 1e-3


@pytest.mark.parametrize("n", [1, 2, 4, 8, 16])
def test_alibi_slopes_for_power_of_two_heads_are_geometric(n):
    expected = torch.tensor([2.0 ** (-8 * (i + 1) / n) for i in range(n)])
    torch.testing.assert_close(alibi_slopes(n), expected)


def test_alibi_slopes_for_eight_heads_are_the_papers_halves():
    expected = torch.tensor([1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32, 1 / 64, 1 / 128, 1 / 256])
    torch.testing.assert_close(alibi_slopes(8), expected)


@pytest.mark.parametrize("n", [3, 5, 6, 12, 20])
def test_alibi_slopes_for_other_head_counts_follow_the_papers_rule(n):
    torch.testing.assert_close(alibi_slopes(n), torch.tensor(paper_alibi_slopes(n)))


def test_alibi_bias_penalises_distance_linearly():
    slopes = torch.tensor([0.5, 0.25])
    pos = torch.arange(4)[None]
    bias = alibi_bias(slopes, pos, torch.arange(4), causal=True)
    assert bias.shape == (1, 2, 4, 4)
    assert float(bias[0, 0, 3, 0]) == -1.5 and float(bias[0, 1, 3, 1]) == -0.5
    assert float(bias[0, 0, 2, 2]) == 0.0
    symmetric = alibi_bias(slopes, pos, torch.arange(4), causal=False)
    assert float(symmetric[0, 0, 0, 3]) == -1.5


def test_rope_tables_read_at_positions_equal_the_angles_computed_there():
    positions = torch.tensor([[0, 5, 63], [7, 7, 1]])
    want = rope_angles(positions, rope_frequencies(16, 500.0))
    got = rope_lookup(*rope_table(64, 16, 500.0), positions)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape == (2, 1, 3, 16) and torch.equal(g, w)


def test_rope_tables_are_unsaved_buffers_of_the_context_length():
    cfg = get_preset("llama-tiny", vocab_size=64).replace(sliding_window=4, global_every=2,
                                                           rope_local_theta=10.0)
    model = Transformer(cfg)
    buffers = dict(model.named_buffers())
    for name in ("rope_cos", "rope_sin", "rope_local_cos", "rope_local_sin"):
        assert buffers[name].shape == (cfg.context_length, cfg.head_size // 2)
    assert not any(key.startswith("rope") for key in model.state_dict())
