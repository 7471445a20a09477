"""Multi-head self-attention with grouped-query heads, an explicit and a fast path.

The explicit path (`attention`) computes softmax(q k^T / sqrt(D) + bias) v step by step
and returns the weights; the fast path (`fast_attention`) calls PyTorch's fused
`scaled_dot_product_attention`. They agree to float rounding; tests hold them together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from parrot.model.cache import KVCache
from parrot.model.config import ModelConfig
from parrot.model.norms import RMSNorm
from parrot.model.positions import apply_rope


def causal_mask(q_pos: torch.Tensor, k_pos: torch.Tensor,
                window: int | None = None) -> torch.Tensor:
    """allowed[b, 0, t, s] = k_pos[s] <= q_pos[b, t] (and q_pos - k_pos < window),
    shape (B, 1, T, S), bool.

    q_pos (B, T); k_pos (S,). The one place attention masks are built: without a cache
    both are indices 0..T-1 (a lower triangle); with a cache k_pos are slot numbers.
    A sliding window of W keeps the last W positions, the query's own included: the
    convention of transformers (`kv_idx > q_idx - sliding_window`) and llama.cpp
    (masked when q - k >= n_swa) for Gemma 3.
    """
    distance = q_pos[:, :, None] - k_pos[None, None, :]              # (B, T, S)
    allowed = distance >= 0
    if window is not None:
        allowed = allowed & (distance < window)
    return allowed[:, None]


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, Hkv, S, D) -> (B, Hkv * n_rep, S, D): query head h reads kv head h // n_rep."""
    return x if n_rep == 1 else x.repeat_interleave(n_rep, dim=1)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              mask: torch.Tensor | None = None, bias: torch.Tensor | None = None,
              dropout_p: float = 0.0, scale: float | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The explicit path: out = softmax(scale * q k^T + bias, masked) v.

    q (B, H, T, D); k, v (B, H, S, D) (kv heads already repeated); mask (B|1, 1, T, S)
    bool, True = may attend; bias broadcastable to (B, H, T, S); scale None = 1/sqrt(D).
    Returns out (B, H, T, D) and the softmax weights (B, H, T, S) (before dropout).
    Softmax runs in float32.
    """
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)).float() * scale                   # (B, H, T, S)
    if bias is not None:
        scores = scores + bias
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1).to(q.dtype)
    dropped = F.dropout(weights, dropout_p) if dropout_p > 0 else weights
    return dropped @ v, weights


def fast_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   mask: torch.Tensor | None, bias: torch.Tensor | None, is_causal: bool,
                   dropout_p: float = 0.0, scale: float | None = None) -> torch.Tensor:
    """The same computation through `scaled_dot_product_attention` (fused kernels).

    k, v may have fewer heads than q (grouped-query): the kernel shares them without
    copying (`enable_gqa`), which matters when decoding reads a long cache every step.
    `is_causal` (no cache, no bias) lets the kernel skip the masked half; otherwise the
    mask and bias are merged into one additive float mask.
    """
    gqa = k.shape[1] != q.shape[1]
    if is_causal:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout_p,
                                              enable_gqa=gqa, scale=scale)
    attn_mask = mask
    if bias is not None:
        attn_mask = bias.to(q.dtype)
        if mask is not None:
            attn_mask = attn_mask.masked_fill(~mask, float("-inf"))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p,
                                          enable_gqa=gqa, scale=scale)


class AttentionCapture:
    """An object the caller passes to collect attention weights (the model keeps no state
    of its own): a forward given one appends each layer's (B, H, T, S) softmax weights,
    detached, in layer order, and takes the explicit path (the fast one never
    materializes the weights)."""

    def __init__(self) -> None:
        self.weights: list[torch.Tensor] = []

    def record(self, weights: torch.Tensor) -> None:
        """Append one layer's weights (B, H, T, S)."""
        self.weights.append(weights.detach())

    def __len__(self) -> int:
        return len(self.weights)


@dataclass
class AttentionInputs:
    """What every layer's attention needs for one forward, built once per forward.

    positions (B, T); rope = (cos, sin) or None; mask (B|1, 1, T, S) bool or None;
    bias (B, H, T, S) float or None; is_causal: the fast path may use the kernel's own
    causal mask; cache and capture as passed to the model; kv_len: the S cache slots read
    (all of a decoder's cache: the engine passes a view cut to the length it needs).
    local: the variant for sliding-window layers (their own window mask and RoPE base),
    built once per forward beside this one; None when no layer slides.
    head_mask (n_layers, n_heads) float or None: the caller's gates xi on each head's
    output (Michel et al. 2019): head h of layer l contributes xi[l, h] * head_h(x) to
    the output projection; 1 keeps a head, 0 removes it, and d loss / d xi measures it.
    """

    positions: torch.Tensor
    rope: tuple[torch.Tensor, torch.Tensor] | None
    mask: torch.Tensor | None
    bias: torch.Tensor | None
    is_causal: bool
    cache: KVCache | None
    capture: AttentionCapture | None
    kv_len: int
    local: AttentionInputs | None = None
    window: int | None = None  # the sliding window of `mask`, if it has one
    head_mask: torch.Tensor | None = None

    def for_layer(self, sliding: bool) -> AttentionInputs:
        """The inputs a layer of this kind reads (sliding layers take `local`)."""
        return self.local if sliding and self.local is not None else self


class Attention(nn.Module):
    """Self-attention with n_heads query heads sharing n_kv_heads key/value heads.

    With qk_norm, each query and key head is RMS-normalized over head_dim (one weight of
    shape (head_dim,) shared by all heads) before RoPE, as Gemma 3 does.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.kv_heads, cfg.head_size
        self.dropout, self.scale = cfg.dropout, cfg.attn_scale
        self.q_norm = RMSNorm(cfg.head_size, cfg.norm_eps) if cfg.qk_norm else None
        self.k_norm = RMSNorm(cfg.head_size, cfg.norm_eps) if cfg.qk_norm else None
        qkv_bias = cfg.has_qkv_bias
        self.q_proj = nn.Linear(cfg.d_model, cfg.n_heads * cfg.head_size, bias=qkv_bias)
        self.k_proj = nn.Linear(cfg.d_model, cfg.kv_heads * cfg.head_size, bias=qkv_bias)
        self.v_proj = nn.Linear(cfg.d_model, cfg.kv_heads * cfg.head_size, bias=qkv_bias)
        self.o_proj = nn.Linear(cfg.n_heads * cfg.head_size, cfg.d_model, bias=cfg.bias)

    def forward(self, x: torch.Tensor, inputs: AttentionInputs, layer: int) -> torch.Tensor:
        """x (B, T, d_model) -> (B, T, d_model)."""
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        return self.o_proj(self.attend(q, k, v, inputs, layer))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               inputs: AttentionInputs, layer: int) -> torch.Tensor:
        """Attention over projected q (B, T, H * D), k and v (B, T, Hkv * D), writing k
        and v into the cache if given -> (B, T, H * D), before the output projection."""
        B, T, _ = q.shape
        q = self._heads(q, self.n_heads)                                # (B, H, T, D)
        k = self._heads(k, self.n_kv_heads)                             # (B, Hkv, T, D)
        v = self._heads(v, self.n_kv_heads)                             # (B, Hkv, T, D)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if inputs.rope is not None:
            q, k = apply_rope(q, *inputs.rope), apply_rope(k, *inputs.rope)
        if inputs.cache is not None:
            k, v = inputs.cache.update(layer, k, v, inputs.positions)  # (B, Hkv, max_len, D)
            k, v = k[:, :, :inputs.kv_len], v[:, :, :inputs.kv_len]      # (B, Hkv, S, D)
        p = self.dropout if self.training else 0.0
        if inputs.capture is not None:
            n_rep = self.n_heads // self.n_kv_heads
            k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)             # (B, H, S, D)
            out, weights = attention(q, k, v, inputs.mask, inputs.bias, p, self.scale)
            inputs.capture.record(weights)
        else:
            out = fast_attention(q, k, v, inputs.mask, inputs.bias, inputs.is_causal, p,
                                 self.scale)
        if inputs.head_mask is not None:                                # gate each head
            out = out * inputs.head_mask[layer].to(out.dtype)[None, :, None, None]
        return out.transpose(1, 2).reshape(B, T, -1)                    # (B, T, H * D)

    def _heads(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """(B, T, n * D) -> (B, n, T, D)."""
        return x.view(x.shape[0], x.shape[1], n, self.head_dim).transpose(1, 2)
