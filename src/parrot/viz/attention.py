"""Attention weight heatmaps: softmax(q k^T / sqrt(d) + mask) per layer and head.

The weights are the model's own, collected by `AttentionCapture` during one forward over
the text; masked entries (above the diagonal for a causal model) are exactly zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

from parrot.errors import ParrotError
from parrot.model import AttentionCapture, Transformer
from parrot.tokenizer import Tokenizer
from parrot.viz.figure import new_figure
from parrot.viz.tokens import token_pieces

MAX_TICK_LABELS = 40  # past this many tokens the axis labels would overlap


@dataclass(frozen=True)
class AttentionMaps:
    """The tokens of a text and each layer's attention weights, weights[layer] (H, T, T)."""

    labels: list[str]
    ids: list[int]
    weights: list[np.ndarray]
    causal: bool = True

    @property
    def n_layers(self) -> int:
        return len(self.weights)

    @property
    def n_heads(self) -> int:
        return self.weights[0].shape[0]


@torch.no_grad()
def attention_maps(model: Transformer, tokenizer: Tokenizer, text: str) -> AttentionMaps:
    """Run the model once over `text` and capture every layer's softmax weights."""
    pieces = token_pieces(tokenizer, text)
    tokens = torch.tensor([[p.id for p in pieces]], dtype=torch.long)
    capture = AttentionCapture()
    model.eval()
    model(tokens, capture=capture)
    weights = [w[0].float().numpy() for w in capture.weights]           # each (H, T, T)
    return AttentionMaps([p.label for p in pieces], [p.id for p in pieces], weights,
                         model.config.causal)


def attention_figure(maps: AttentionMaps, layer: int | None = None,
                     head: int | None = None) -> Figure:
    """Heatmaps of attention weights (rows: queries, columns: keys).

    layer and head given: one large map; layer only: that layer's heads in a row;
    neither: a grid of every layer (rows) by every head (columns).
    """
    if layer is not None and not 0 <= layer < maps.n_layers:
        raise ParrotError(f"Layer {layer} is out of range: the model has {maps.n_layers} "
                          f"layers, numbered 0 to {maps.n_layers - 1}.")
    if head is not None and not 0 <= head < maps.n_heads:
        raise ParrotError(f"Head {head} is out of range: each layer has {maps.n_heads} "
                          f"heads, numbered 0 to {maps.n_heads - 1}.")
    if head is not None and layer is None:
        raise ParrotError("Give --layer together with --head to pick one attention head.")
    layers = range(maps.n_layers) if layer is None else [layer]
    heads = range(maps.n_heads) if head is None else [head]
    single = len(layers) == 1 and len(heads) == 1
    size = 6.0 if single else 2.6
    fig = new_figure(size * len(heads) + 1.0, size * len(layers) + 0.6)
    axes = fig.subplots(len(layers), len(heads), squeeze=False)
    for r, li in enumerate(layers):
        for c, hi in enumerate(heads):
            image = draw_heatmap(axes[r][c], maps.weights[li][hi], maps.labels, maps.causal,
                                 show_labels=single or len(maps.labels) <= 12)
            axes[r][c].set_title(f"layer {li} head {hi}", fontsize=9)
    fig.colorbar(image, ax=axes, shrink=0.8, label="attention weight")
    if maps.causal:
        fig.suptitle("causal attention: grey cells are future keys, masked to -inf before "
                     "the softmax (weight 0)", fontsize=9)
    return fig


def draw_heatmap(ax: Axes, weights: np.ndarray, labels: list[str], causal: bool,
                 show_labels: bool) -> AxesImage:
    """One (T, T) weight matrix with queries down and keys across; returns the image.

    For a causal model the future keys (column > row) are drawn grey; their weights, still
    in the image's data, are the exact zeros the softmax gave them.
    """
    future = np.triu(np.ones_like(weights, dtype=bool), k=1) if causal else False
    cmap = colormaps["viridis"].with_extremes(bad="#d9d9d9")
    image = ax.imshow(np.ma.masked_array(weights, mask=future), cmap=cmap, vmin=0.0, vmax=1.0,
                      interpolation="nearest")
    n = len(labels)
    if show_labels and n <= MAX_TICK_LABELS:
        ax.set_xticks(range(n), labels, rotation=90, fontsize=7, family="monospace")
        ax.set_yticks(range(n), labels, fontsize=7, family="monospace")
        ax.set_xlabel("key (attended to)", fontsize=8)
        ax.set_ylabel("query", fontsize=8)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    return image
