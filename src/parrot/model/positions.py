"""Position information: absolute tables (learned, sinusoidal), RoPE and ALiBi.

All functions take explicit integer positions (B, T), so cached decoding, ragged batches and
per-row prefill use the same code as training.
"""

from __future__ import annotations

import math

import torch


def sinusoidal_table(length: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """The fixed table of "Attention Is All You Need", shape (length, dim):

    PE[pos, 2i] = sin(pos / base^(2i/dim)),  PE[pos, 2i+1] = cos(pos / base^(2i/dim)).
    """
    pos = torch.arange(length, dtype=torch.float64)[:, None]          # (L, 1)
    two_i = torch.arange(0, dim, 2, dtype=torch.float64)              # (dim/2,)
    angles = pos / base ** (two_i / dim)                              # (L, dim/2)
    table = torch.empty(length, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles)
    return table.float()


def rope_frequencies(head_dim: int, theta: float) -> torch.Tensor:
    """Inverse frequencies w_i = theta^(-2i/head_dim) for i = 0 .. head_dim/2 - 1."""
    two_i = torch.arange(0, head_dim, 2, dtype=torch.float32)
    return 1.0 / theta ** (two_i / head_dim)


def rope_angles(positions: torch.Tensor, inv_freq: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The rotation tables (cos, sin) that `apply_rope` takes, each (B, 1, T, head_dim)
    float32, for the angles theta_i = pos * w_i:

        cos = [cos theta, cos theta],   sin = [-sin theta, sin theta]

    Built once per forward and shared by every layer (the singleton axis broadcasts over
    heads); the signs live in the table so each rotation costs few operations.
    """
    angles = positions.float()[:, None, :, None] * inv_freq           # (B, 1, T, D/2)
    cos, sin = angles.cos(), angles.sin()
    return torch.cat((cos, cos), dim=-1), torch.cat((-sin, sin), dim=-1)


def rope_table(length: int, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the angles pos * w_i for pos = 0 .. length - 1, each (length,
    head_dim / 2) float32: the model keeps them as buffers, `rope_lookup` reads them."""
    angles = torch.arange(length, dtype=torch.float32)[:, None] * rope_frequencies(head_dim, theta)
    return angles.cos(), angles.sin()


def rope_lookup(cos: torch.Tensor, sin: torch.Tensor, positions: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """`rope_angles(positions, ...)` read from the tables of `rope_table` (the same float32
    numbers): positions (B, T) -> (cos, sin), each (B, 1, T, head_dim)."""
    cos, sin = cos[positions][:, None], sin[positions][:, None]      # (B, 1, T, D/2)
    return torch.cat((cos, cos), dim=-1), torch.cat((-sin, sin), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x[i], x[i + D/2]) of x (B, H, T, D) by the angle pos * w_i:

    x'[i]       = x[i] cos - x[i + D/2] sin
    x'[i + D/2] = x[i + D/2] cos + x[i] sin

    i.e. x' = x * cos + swap_halves(x) * sin with the tables of `rope_angles`.
    Layout: the "half-split" pairing of GPT-NeoX and Hugging Face Llama (`rotate_half`),
    chosen so that Hugging Face checkpoints load without permuting q/k weights. GGUF files
    store llama.cpp's adjacent-pair layout; the converter un-permutes those rows instead.
    Because rotations compose, q at m dotted with k at n depends only on n - m.
    """
    half = x.shape[-1] // 2
    x32 = x.float()
    swapped = torch.cat((x32[..., half:], x32[..., :half]), dim=-1)
    return (x32 * cos + swapped * sin).to(x.dtype)


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """Per-head slopes of ALiBi (Press et al., 2022).

    For n a power of two: the geometric sequence 2^(-8/n), 2^(-16/n), ..., 2^(-8).
    Otherwise, with m the largest power of two below n: the m slopes for m heads, then
    the first, third, fifth, ... slopes of the sequence for 2m heads, n - m of them.
    """
    def power_of_two(n: int) -> list[float]:
        return [2.0 ** (-8.0 * (i + 1) / n) for i in range(n)]

    m = 2 ** int(math.floor(math.log2(n_heads)))
    slopes = power_of_two(m)
    if m != n_heads:
        slopes += power_of_two(2 * m)[0::2][: n_heads - m]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_bias(slopes: torch.Tensor, q_pos: torch.Tensor, k_pos: torch.Tensor,
               causal: bool) -> torch.Tensor:
    """Additive score bias -slope_h * (q - k), shape (B, H, T, S), float32.

    q_pos (B, T) and k_pos (B, S) or (S,). Causal models only see k <= q, so the distance
    q - k is non-negative there; bidirectional models use |q - k| (the symmetric variant).
    """
    if k_pos.dim() == 1:
        k_pos = k_pos[None, :]
    distance = (q_pos[:, :, None] - k_pos[:, None, :]).float()       # (B, T, S)
    if not causal:
        distance = distance.abs()
    return -slopes[None, :, None, None] * distance[:, None]          # (B, H, T, S)
