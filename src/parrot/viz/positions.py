"""Position encodings as pictures: the sinusoidal table, RoPE's relative pattern, ALiBi.

Each pattern is computed by the model's own functions in `parrot.model.positions`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure

from parrot.errors import ParrotError
from parrot.model.positions import (
    alibi_bias,
    alibi_slopes,
    apply_rope,
    rope_angles,
    rope_frequencies,
    sinusoidal_table,
)
from parrot.viz.figure import new_figure

KINDS = ("sinusoidal", "rope", "alibi")
MAX_ALIBI_PANELS = 8


@dataclass(frozen=True)
class PositionPattern:
    """kind; values: (length, dim) for sinusoidal, (length, length) for rope,
    (heads, length, length) for alibi (-inf where a causal mask hides the key)."""

    kind: str
    values: np.ndarray


def rope_relative_scores(dim: int, length: int, theta: float = 10000.0) -> np.ndarray:
    """S[m, n] = RoPE(u, m) . RoPE(u, n) for the all-ones vector u of size dim.

    Rotations compose, so S[m, n] = sum_i 2 cos((n - m) w_i): it depends only on n - m
    and decays (with ripples) as the distance grows.
    """
    u = torch.ones(1, 1, length, dim)                                  # (B, H, T, D)
    positions = torch.arange(length)[None]                             # (1, T)
    rotated = apply_rope(u, *rope_angles(positions, rope_frequencies(dim, theta)))[0, 0]
    return (rotated @ rotated.T).numpy()


def alibi_pattern(n_heads: int, length: int, causal: bool = True) -> np.ndarray:
    """Each head's additive bias -slope_h * (q - k), with -inf above the diagonal if causal."""
    index = torch.arange(length)
    bias = alibi_bias(alibi_slopes(n_heads), index[None], index, causal)[0]   # (H, T, T)
    if causal:
        bias = bias.masked_fill(index[None, :] > index[:, None], float("-inf"))
    return bias.numpy()


def position_pattern(kind: str, dim: int = 64, length: int = 64, n_heads: int = 8,
                     theta: float = 10000.0) -> PositionPattern:
    """The pattern of one kind of position encoding (ParrotError for bad sizes)."""
    if kind not in KINDS:
        raise ParrotError(f"Unknown position kind {kind!r}; choose one of {', '.join(KINDS)}.")
    if length < 1 or dim < 2 or dim % 2 or n_heads < 1:
        raise ParrotError(f"Need length >= 1, an even dim >= 2 and heads >= 1; got length "
                          f"{length}, dim {dim}, heads {n_heads}.")
    if kind == "sinusoidal":
        return PositionPattern(kind, sinusoidal_table(length, dim).numpy())
    if kind == "rope":
        return PositionPattern(kind, rope_relative_scores(dim, length, theta))
    return PositionPattern(kind, alibi_pattern(n_heads, length))


def positions_figure(pattern: PositionPattern) -> Figure:
    """Sinusoidal: the table as an image. RoPE: the score matrix and the score against
    distance. ALiBi: one bias image per head (up to 8), masked entries left blank."""
    if pattern.kind == "sinusoidal":
        fig = new_figure(9, 6)
        ax = fig.add_subplot()
        image = ax.imshow(pattern.values, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1,
                          interpolation="nearest")
        ax.set(xlabel="dimension (even: sin, odd: cos)", ylabel="position",
               title="sinusoidal position table PE[pos, i]")
        fig.colorbar(image, ax=ax)
        return fig
    if pattern.kind == "rope":
        return _rope_figure(pattern.values)
    return _alibi_figure(pattern.values)


def _rope_figure(scores: np.ndarray) -> Figure:
    fig = new_figure(12, 5)
    left, right = fig.subplots(1, 2)
    image = left.imshow(scores, cmap="viridis", interpolation="nearest")
    left.set(xlabel="key position n", ylabel="query position m",
             title="RoPE: q(m) . k(n) for q = k = ones")
    fig.colorbar(image, ax=left)
    right.plot(np.arange(scores.shape[0]), scores[0])
    right.set(xlabel="distance n - m", ylabel="score",
              title="the score depends only on the distance")
    right.grid(alpha=0.3)
    return fig


def _alibi_figure(bias: np.ndarray) -> Figure:
    heads = min(bias.shape[0], MAX_ALIBI_PANELS)
    cols = min(heads, 4)
    rows = (heads + cols - 1) // cols
    fig = new_figure(3.2 * cols + 1, 3.0 * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    shown = np.ma.masked_invalid(bias)
    vmin = float(shown[:heads].min())
    for h in range(rows * cols):
        ax = axes[h // cols][h % cols]
        if h >= heads:
            ax.set_axis_off()
            continue
        image = ax.imshow(shown[h], cmap="magma", vmin=vmin, vmax=0, interpolation="nearest")
        ax.set_title(f"head {h}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=axes, shrink=0.7, label="bias added to q.k (blank: masked)")
    fig.suptitle("ALiBi: -slope x distance (query rows, key columns)")
    return fig
