"""Attention: explicit and SDPA paths against a per-head loop; GQA against duplicated MHA."""

from __future__ import annotations

import math

import pytest
import torch

from parrot.model import AttentionCapture, ModelConfig, Transformer
from parrot.model.attention import attention, causal_mask, fast_attention, repeat_kv
from parrot.model.positions import alibi_bias, alibi_slopes


def loop_attention(q, k, v, causal, bias=None):
    """softmax(q k^T / sqrt(d) + bias) v, one batch row, head and query at a time."""
    B, H, T, D = q.shape
    out = torch.zeros_like(q, dtype=torch.float64)
    for b in range(B):
        for h in range(H):
            for t in range(T):
                visible = range(t + 1) if causal else range(k.shape[2])
                scores = torch.tensor([
                    float(q[b, h, t] @ k[b, h, s]) / math.sqrt(D)
                    + (float(bias[b, h, t, s]) if bias is not None else 0.0)
                    for s in visible
                ], dtype=torch.float64)
                w = torch.softmax(scores, 0)
                out[b, h, t] = sum(w[i] * v[b, h, s].double() for i, s in enumerate(visible))
    return out.float()


def qkv(B=2, H=4, T=7, D=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, T, D, generator=g) for _ in range(3)]


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("with_alibi", [False, True])
def test_both_paths_match_the_loop_reference(causal, with_alibi):
    q, k, v = qkv()
    index = torch.arange(7)
    mask = causal_mask(index[None], index) if causal else None
    rows = index[None].expand(2, 7)
    bias = alibi_bias(alibi_slopes(4), rows, index, causal) if with_alibi else None
    expected = loop_attention(q, k, v, causal, bias)
    explicit, weights = attention(q, k, v, mask, bias)
    fast = fast_attention(q, k, v, mask, bias, is_causal=causal and not with_alibi)
    torch.testing.assert_close(explicit, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 7))


def test_fast_path_shares_kv_heads_like_repeating_them():
    q, _, _ = qkv(H=6)
    _, k, v = qkv(H=2, seed=1)
    index = torch.arange(7)
    mask = causal_mask(index[None], index)
    expected = loop_attention(q, repeat_kv(k, 3), repeat_kv(v, 3), causal=True)
    for is_causal in (True, False):
        got = fast_attention(q, k, v, mask, None, is_causal=is_causal)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_causal_mask_compares_key_slots_with_query_positions():
    mask = causal_mask(torch.tensor([[2, 0]]), torch.arange(4))
    assert mask.shape == (1, 1, 2, 4)
    assert mask[0, 0].tolist() == [[True, True, True, False], [True, False, False, False]]


def test_repeat_kv_gives_query_head_h_the_kv_head_h_over_group():
    kv = torch.arange(2.0).view(1, 2, 1, 1)
    assert repeat_kv(kv, 3).view(-1).tolist() == [0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize("n_kv_heads", [1, 2])
def test_gqa_equals_mha_with_duplicated_kv_weights(n_kv_heads):
    base = dict(vocab_size=30, context_length=12, d_model=32, n_layers=2, n_heads=4,
                positions="rope")
    torch.manual_seed(0)
    gqa = Transformer(ModelConfig(**base, n_kv_heads=n_kv_heads)).eval()
    mha = Transformer(ModelConfig(**base)).eval()
    state = dict(gqa.state_dict())
    D, group = 8, 4 // n_kv_heads
    for name, tensor in gqa.state_dict().items():
        if ".k_proj." in name or ".v_proj." in name:   # rows are (kv head, D): copy per group
            heads = tensor.view(n_kv_heads, D, *tensor.shape[1:])
            state[name] = heads.repeat_interleave(group, dim=0).reshape(4 * D, *tensor.shape[1:])
    mha.load_state_dict(state)
    tokens = torch.randint(0, 30, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(gqa(tokens), mha(tokens), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("positions", ["learned", "rope", "alibi", "none"])
def test_sdpa_and_explicit_paths_agree_in_the_model(positions):
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=64, context_length=32, d_model=64, n_layers=2,
                                    n_heads=4, n_kv_heads=2, positions=positions)).eval()
    tokens = torch.randint(0, 64, (3, 32))
    with torch.no_grad():
        diff = (model(tokens) - model(tokens, capture=AttentionCapture())).abs().max()
    assert float(diff) < 1e-5


@pytest.mark.parametrize("changes", [{}, dict(n_kv_heads=2), dict(positions="alibi", n_kv_heads=1)])
def test_sdpa_path_gradients_match_explicit_path(changes):
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=64, context_length=16, d_model=32, n_layers=2,
                                    **changes))
    tokens = torch.randint(0, 64, (2, 16))
    grads = []
    for capture in (None, AttentionCapture()):
        model.zero_grad()
        model(tokens, capture=capture).logsumexp(-1).mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-4)
