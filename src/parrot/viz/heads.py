"""Layers x heads heatmaps: how much each attention head matters (eval/heads.py)."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure

from parrot.viz.figure import new_figure


def _panel(fig: Figure, ax, values: torch.Tensor, title: str, cmap: str) -> None:
    data = values.detach().float().numpy()
    image = ax.imshow(data, cmap=cmap, aspect="auto", interpolation="nearest")
    ax.set(title=title, xlabel="head", ylabel="layer")
    ax.set_xticks(np.arange(data.shape[1]))
    step = max(1, data.shape[0] // 16)
    ax.set_yticks(np.arange(0, data.shape[0], step))
    if data.size <= 160:  # small grids carry their numbers, light on dark cells
        middle = (data.min() + data.max()) / 2
        for (row, col), value in np.ndenumerate(data):
            ax.text(col, row, f"{value:.2g}", ha="center", va="center", fontsize=6,
                    color="white" if value < middle else "black")
    fig.colorbar(image, ax=ax, shrink=0.8)


def heads_figure(importance: torch.Tensor, ablation: torch.Tensor | None,
                 title: str = "") -> Figure:
    """Importance E|dL/dxi| and, when given, the ablation loss increase, side by side."""
    n_layers, n_heads = importance.shape
    panels = 1 if ablation is None else 2
    fig = new_figure(min(4.0 + 0.5 * n_heads, 9.0) * panels, min(2.5 + 0.3 * n_layers, 10.0))
    axes = fig.subplots(1, panels, squeeze=False)[0]
    _panel(fig, axes[0], importance, "importance E|dL/d xi_h|", "viridis")
    if ablation is not None:
        _panel(fig, axes[1], ablation, "loss increase, head alone removed", "magma")
    if title:
        fig.suptitle(title)
    return fig
