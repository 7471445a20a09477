"""The tiled (FlashAttention-style) path equals the explicit path to 1e-6 in float64."""

import pytest
import torch

from parrot.model.attention import attention, causal_mask, repeat_kv
from parrot.model.tiled_attention import online_softmax_step, tiled_attention


def _naive(q, k, v, causal, window):
    """The explicit path with the model's own mask builder (float64 throughout)."""
    T, S = q.shape[2], k.shape[2]
    mask = None
    if causal:
        q_pos = torch.arange(S - T, S)[None]
        mask = causal_mask(q_pos, torch.arange(S), window)
    n_rep = q.shape[1] // k.shape[1]
    out, _ = attention(q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), mask)
    return out


def _qkv(B, H, h_kv, T, S, D, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, T, D, generator=g, dtype=torch.float64)
    k = torch.randn(B, h_kv, S, D, generator=g, dtype=torch.float64)
    v = torch.randn(B, h_kv, S, D, generator=g, dtype=torch.float64)
    return q, k, v


@pytest.mark.parametrize(("causal", "window"), [(True, None), (True, 7), (False, None)])
@pytest.mark.parametrize(("H", "h_kv"), [(4, 4), (6, 2), (4, 1)])
def test_tiled_equals_naive_in_float64(causal, window, H, h_kv):
    q, k, v = _qkv(2, H, h_kv, 37, 37, 8)
    expected = _naive(q, k, v, causal, window)
    got = tiled_attention(q, k, v, causal=causal, window=window, block_q=8, block_k=5)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_tiled_equals_naive_for_queries_at_the_end_of_a_cache():
    q, k, v = _qkv(1, 4, 2, 5, 29, 8, seed=1)                  # 5 new queries, 29 keys
    expected = _naive(q, k, v, True, 11)
    got = tiled_attention(q, k, v, causal=True, window=11, block_q=2, block_k=4)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_block_sizes_do_not_change_the_result():
    q, k, v = _qkv(1, 2, 2, 50, 50, 4, seed=2)
    one = tiled_attention(q, k, v, block_q=50, block_k=50)
    many = tiled_attention(q, k, v, block_q=3, block_k=7)
    torch.testing.assert_close(one, many, atol=1e-12, rtol=0)


def test_online_softmax_of_two_tiles_equals_one_softmax():
    g = torch.Generator().manual_seed(3)
    scores = torch.randn(3, 10, generator=g, dtype=torch.float64) * 5
    v = torch.randn(10, 4, generator=g, dtype=torch.float64)
    m = torch.full((3,), float("-inf"), dtype=torch.float64)
    denom, acc = torch.zeros(3, dtype=torch.float64), torch.zeros(3, 4, dtype=torch.float64)
    m, denom, acc = online_softmax_step(m, denom, acc, scores[:, :6], v[:6])
    m, denom, acc = online_softmax_step(m, denom, acc, scores[:, 6:], v[6:])
    torch.testing.assert_close(acc / denom[:, None], torch.softmax(scores, -1) @ v)
    torch.testing.assert_close(m, scores.max(-1).values)


def test_float32_inputs_agree_with_the_fast_path():
    g = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(1, 4, 64, 16, generator=g) for _ in range(3))
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    got = tiled_attention(q, k, v, block_q=16, block_k=16)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
