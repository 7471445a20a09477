"""A naive reference transformer written from the spec's formulas, in float64 with loops.

It reads the weights of a parrot `Transformer` but none of its code: positions, norms,
attention (head by head, query by query), activations and the head are all recomputed here.
"""

from __future__ import annotations

import math

import torch


def sinusoid(length: int, dim: int) -> torch.Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d))."""
    table = torch.zeros(length, dim, dtype=torch.float64)
    for pos in range(length):
        for j in range(dim):
            angle = pos / 10000 ** ((j - j % 2) / dim)
            table[pos, j] = math.sin(angle) if j % 2 == 0 else math.cos(angle)
    return table


def paper_alibi_slopes(n: int) -> list[float]:
    """The slopes as computed in the ALiBi paper's reference code."""
    def pow2(k: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(k) - 3)))
        return [start * start**i for i in range(k)]

    if math.log2(n).is_integer():
        return pow2(n)
    closest = 2 ** math.floor(math.log2(n))
    return pow2(closest) + paper_alibi_slopes(2 * closest)[0::2][: n - closest]


def rotation(pos: int, dim: int, theta: float) -> torch.Tensor:
    """The (dim x dim) RoPE rotation at `pos`, pairing coordinates i and i + dim/2."""
    r = torch.eye(dim, dtype=torch.float64)
    half = dim // 2
    for i in range(half):
        a = pos * theta ** (-2 * i / dim)
        r[i, i], r[i, i + half] = math.cos(a), -math.sin(a)
        r[i + half, i], r[i + half, i + half] = math.sin(a), math.cos(a)
    return r


def norm(x: torch.Tensor, module, kind: str, eps: float) -> torch.Tensor:
    w = module.weight.double()
    if kind == "rmsnorm":
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    b = module.bias.double() if module.bias is not None else 0.0
    return (x - mean) / torch.sqrt(var + eps) * w + b


def linear(x: torch.Tensor, layer) -> torch.Tensor:
    y = x @ layer.weight.double().T
    return y + layer.bias.double() if layer.bias is not None else y


def activation(name: str, x: torch.Tensor) -> torch.Tensor:
    if name == "relu":
        return torch.where(x > 0, x, torch.zeros_like(x))
    if name in ("gelu", "geglu"):
        return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))
    if name in ("gelu_tanh", "geglu_tanh"):
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    if name == "swiglu":
        return x / (1 + torch.exp(-x))
    raise ValueError(name)


def mlp(x: torch.Tensor, module, kind: str) -> torch.Tensor:
    if module.gate_proj is None:
        return linear(activation(kind, linear(x, module.up_proj)), module.down_proj)
    gated = activation(kind, linear(x, module.gate_proj)) * linear(x, module.up_proj)
    return linear(gated, module.down_proj)


def attention(x: torch.Tensor, module, cfg) -> torch.Tensor:
    """One sequence x (T, d): head by head, query by query."""
    T = x.shape[0]
    H, Hkv, D = cfg.n_heads, cfg.kv_heads, cfg.head_size
    q = linear(x, module.q_proj).view(T, H, D)
    k = linear(x, module.k_proj).view(T, Hkv, D)
    v = linear(x, module.v_proj).view(T, Hkv, D)
    slopes = paper_alibi_slopes(H)
    rotations = [rotation(pos, D, cfg.rope_theta) for pos in range(T)]
    heads = []
    for h in range(H):
        g = h // (H // Hkv)  # the kv head this query head shares
        out = torch.zeros(T, D, dtype=torch.float64)
        for t in range(T):
            qt = q[t, h]
            if cfg.positions == "rope":
                qt = rotations[t] @ qt
            visible = range(t + 1) if cfg.causal else range(T)
            scores, values = [], []
            for s in visible:
                ks = k[s, g]
                if cfg.positions == "rope":
                    ks = rotations[s] @ ks
                score = float(qt @ ks) / math.sqrt(D)
                if cfg.positions == "alibi":
                    score -= slopes[h] * abs(t - s)
                scores.append(score)
                values.append(v[s, g])
            weights = torch.softmax(torch.tensor(scores, dtype=torch.float64), 0)
            out[t] = sum(w * val for w, val in zip(weights, values, strict=True))
        heads.append(out)
    return linear(torch.cat(heads, dim=-1), module.o_proj)


@torch.no_grad()
def naive_logits(model, tokens: torch.Tensor) -> torch.Tensor:
    """Logits (B, T, V) in float64 for tokens (B, T) at positions 0..T-1."""
    cfg = model.config
    rows = []
    for row in tokens:
        T = row.shape[0]
        x = model.tok_emb.weight.double()[row]
        if cfg.positions == "learned":
            x = x + model.pos_emb.weight.double()[:T]
        if cfg.positions == "sinusoidal":
            x = x + sinusoid(T, cfg.d_model)
        for block in model.blocks:
            n1 = lambda h, b=block: norm(h, b.norm1, cfg.norm, cfg.norm_eps)  # noqa: E731
            n2 = lambda h, b=block: norm(h, b.norm2, cfg.norm, cfg.norm_eps)  # noqa: E731
            if cfg.norm_placement == "pre":
                x = x + attention(n1(x), block.attn, cfg)
                x = x + mlp(n2(x), block.mlp, cfg.mlp)
            else:
                x = n1(x + attention(x, block.attn, cfg))
                x = n2(x + mlp(x, block.mlp, cfg.mlp))
        if cfg.norm_placement == "pre":
            x = norm(x, model.final_norm, cfg.norm, cfg.norm_eps)
        rows.append(x @ model.lm_head.weight.double().T)
    return torch.stack(rows)
