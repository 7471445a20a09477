"""Gemma 3's switches (sandwich norms, QK-norm, embedding scale, sliding-window layers with
their own RoPE base, attention scale) against a naive float64 reference written here from
the formulas, plus cached decode == recompute with every switch on."""

from __future__ import annotations

import math

import pytest
import torch

from parrot.errors import ParrotError
from parrot.model import AttentionCapture, KVCache, ModelConfig, Transformer
from parrot.model.attention import causal_mask

GEMMA_LIKE = dict(
    vocab_size=97, context_length=64, d_model=32, n_layers=4, n_heads=4, n_kv_heads=2,
    head_dim=16, positions="rope", rope_theta=1_000_000.0, rope_local_theta=10_000.0,
    norm="rmsnorm", norm_eps=1e-6, norm_placement="sandwich", mlp="geglu_tanh", bias=False,
    embed_scale=True, qk_norm=True, sliding_window=4, global_every=2, attn_scale=0.3,
)


# --- the naive reference: one sequence, head by head, query by query, float64 -----------
def rms(x: torch.Tensor, module, eps: float) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) * w over the last axis."""
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * module.weight.double()


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def rotate(v: torch.Tensor, pos: int, theta: float) -> torch.Tensor:
    """RoPE on one head vector: pair i with i + D/2, angle pos * theta^(-2i/D)."""
    D, out = v.shape[0], v.clone()
    for i in range(D // 2):
        a = pos * theta ** (-2 * i / D)
        out[i] = v[i] * math.cos(a) - v[i + D // 2] * math.sin(a)
        out[i + D // 2] = v[i + D // 2] * math.cos(a) + v[i] * math.sin(a)
    return out


def naive_attention(x: torch.Tensor, attn, cfg: ModelConfig, layer: int) -> torch.Tensor:
    T, H, Hkv, D = x.shape[0], cfg.n_heads, cfg.kv_heads, cfg.head_size
    q = (x @ attn.q_proj.weight.double().T).view(T, H, D)
    k = (x @ attn.k_proj.weight.double().T).view(T, Hkv, D)
    v = (x @ attn.v_proj.weight.double().T).view(T, Hkv, D)
    if cfg.qk_norm:  # per head, before RoPE
        q, k = rms(q, attn.q_norm, cfg.norm_eps), rms(k, attn.k_norm, cfg.norm_eps)
    sliding = cfg.is_sliding(layer)
    theta = cfg.rope_local_theta if sliding and cfg.rope_local_theta else cfg.rope_theta
    scale = cfg.attn_scale if cfg.attn_scale is not None else 1 / math.sqrt(D)
    q = torch.stack([torch.stack([rotate(q[t, h], t, theta) for h in range(H)]) for t in range(T)])
    k = torch.stack([torch.stack([rotate(k[t, g], t, theta) for g in range(Hkv)])
                     for t in range(T)])
    out = torch.zeros(T, H, D, dtype=torch.float64)
    for h in range(H):
        g = h // (H // Hkv)
        for t in range(T):
            first = max(0, t - cfg.sliding_window + 1) if sliding else 0  # last W, t included
            keys = range(first, t + 1)
            scores = torch.tensor([float(q[t, h] @ k[s, g]) * scale for s in keys],
                                  dtype=torch.float64)
            weights = torch.softmax(scores, 0)
            out[t, h] = sum(w * v[s, g] for w, s in zip(weights, keys, strict=True))
    return out.reshape(T, H * D) @ attn.o_proj.weight.double().T


def naive_mlp(x: torch.Tensor, mlp) -> torch.Tensor:
    gate = gelu_tanh(x @ mlp.gate_proj.weight.double().T)
    return (gate * (x @ mlp.up_proj.weight.double().T)) @ mlp.down_proj.weight.double().T


@torch.no_grad()
def naive_logits(model: Transformer, row: torch.Tensor) -> torch.Tensor:
    cfg, eps = model.config, model.config.norm_eps
    x = model.tok_emb.weight.double()[row]
    if cfg.embed_scale:
        x = x * math.sqrt(cfg.d_model)
    for i, b in enumerate(model.blocks):
        if cfg.norm_placement == "sandwich":
            x = x + rms(naive_attention(rms(x, b.norm1, eps), b.attn, cfg, i), b.post_attn_norm, eps)
            x = x + rms(naive_mlp(rms(x, b.norm2, eps), b.mlp), b.post_mlp_norm, eps)
        else:
            x = x + naive_attention(rms(x, b.norm1, eps), b.attn, cfg, i)
            x = x + naive_mlp(rms(x, b.norm2, eps), b.mlp)
    return rms(x, model.final_norm, eps) @ model.lm_head.weight.double().T


def random_model(**overrides) -> Transformer:
    torch.manual_seed(0)
    model = Transformer(ModelConfig(**{**GEMMA_LIKE, **overrides})).eval()
    with torch.no_grad():  # norms off 1 so a misplaced or missing norm shows
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.3 * torch.randn_like(p))
    return model


def tokens(batch: int = 2, length: int = 11) -> torch.Tensor:
    return torch.randint(0, 97, (batch, length), generator=torch.Generator().manual_seed(1))


# One switch at a time on a plain RMSNorm/GeGLU/RoPE stack, then all together.
SWITCHES = {
    "all": {},
    "sandwich_only": dict(qk_norm=False, embed_scale=False, sliding_window=None,
                          attn_scale=None, rope_local_theta=None),
    "qk_norm_only": dict(norm_placement="pre", embed_scale=False, sliding_window=None,
                         attn_scale=None, rope_local_theta=None),
    "embed_scale_only": dict(norm_placement="pre", qk_norm=False, sliding_window=None,
                             attn_scale=None, rope_local_theta=None),
    "sliding_every_layer": dict(global_every=0, norm_placement="pre", qk_norm=False),
    "sliding_one_theta": dict(rope_local_theta=None, sliding_window=3, global_every=3),
    "window_of_one": dict(sliding_window=1),
}


@pytest.mark.parametrize("name", list(SWITCHES))
def test_forward_matches_naive_float64_reference(name):
    model = random_model(**SWITCHES[name])
    ids = tokens()
    with torch.no_grad():
        got = model(ids).double()
    expected = torch.stack([naive_logits(model, row) for row in ids])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_explicit_attention_path_matches_the_fast_path():
    model, ids = random_model(), tokens(length=13)
    capture = AttentionCapture()
    with torch.no_grad():
        torch.testing.assert_close(model(ids, capture=capture), model(ids), rtol=1e-5, atol=1e-5)
    sliding = capture.weights[0][0, 0]  # layer 0 slides with W = 4: row t sees t-3..t
    assert torch.all(sliding.tril(-4) == 0) and torch.all(sliding.diagonal() > 0)
    full = capture.weights[1][0, 0]  # layer 1 is global: every earlier key has weight
    assert torch.all(full[torch.ones_like(full, dtype=torch.bool).tril()] > 0)


@pytest.mark.parametrize("prefill", [1, 3, 6])
def test_cached_decode_equals_recompute(prefill):
    model, ids = random_model(), tokens(length=14)
    cache = KVCache(model.config, 2, 20)
    with torch.no_grad():
        steps = [model(ids[:, :prefill], cache=cache)]
        for t in range(prefill, ids.shape[1]):
            steps.append(model(ids[:, t:t + 1], positions=torch.full((2, 1), t), cache=cache))
        torch.testing.assert_close(torch.cat(steps, 1), model(ids), rtol=1e-5, atol=1e-5)


def test_ragged_rows_in_one_cache_match_their_own_recompute():
    """Row 0 decodes past the window while row 1 is still in its prompt."""
    model, ids = random_model(), tokens(length=10)
    cache = KVCache(model.config, 2, 16)
    with torch.no_grad():
        model(ids[:1, :7], cache=cache.rows(0, 1))
        model(ids[1:, :2], cache=cache.rows(1, 2))
        positions = torch.tensor([[7], [2]])
        step = model(torch.stack([ids[0, 7:8], ids[1, 2:3]]), positions=positions, cache=cache)
        torch.testing.assert_close(step[0, 0], model(ids[:1, :8])[0, -1], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(step[1, 0], model(ids[1:, :3])[0, -1], rtol=1e-5, atol=1e-5)


def test_window_mask_keeps_the_last_w_positions_including_the_query():
    mask = causal_mask(torch.tensor([[5]]), torch.arange(8), window=3)[0, 0, 0]
    assert mask.tolist() == [False, False, False, True, True, True, False, False]


def test_global_every_picks_the_global_layers():
    cfg = ModelConfig(n_layers=12, sliding_window=8, global_every=6)
    assert [i for i in range(12) if not cfg.is_sliding(i)] == [5, 11]
    assert not ModelConfig(n_layers=2).is_sliding(0)
    assert all(ModelConfig(n_layers=3, sliding_window=2).is_sliding(i) for i in range(3))


def test_sandwich_norm_names_and_plain_configs_keep_their_names():
    gemma = set(random_model().state_dict())
    assert {"blocks.0.post_attn_norm.weight", "blocks.0.post_mlp_norm.weight",
            "blocks.0.attn.q_norm.weight", "blocks.0.attn.k_norm.weight"} <= gemma
    assert random_model().blocks[0].attn.q_norm.weight.shape == (16,)
    plain = set(Transformer(ModelConfig(n_layers=1)).state_dict())
    assert not any("post_" in n or "q_norm" in n for n in plain)


@pytest.mark.parametrize("bad, message", [
    (dict(sliding_window=4, causal=False), "sliding_window needs a causal model"),
    (dict(attn_scale=0.0), "attn_scale must be positive"),
    (dict(sliding_window=0), "sliding_window must be positive"),
])
def test_invalid_gemma_settings_raise_a_clear_error(bad, message):
    with pytest.raises(ParrotError, match=message):
        ModelConfig(**bad)
