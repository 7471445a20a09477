"""Pictures of the RNN history lesson: accuracy against source length, and an alignment."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from parrot.viz.figure import new_figure

STYLES = {"gru-fixed": ("#c44e52", "o"), "gru-attention": ("#4c72b0", "s"),
          "transformer": ("#55a868", "^")}


def accuracy_figure(results: dict[str, dict]) -> Figure:
    """Exact match and token accuracy per source-length bucket, one line per model.

    results[name] = {"parameters": int, "by_length": [{"lo", "hi", "exact_match",
    "token_accuracy", ...}]}.
    """
    fig = new_figure(10.0, 4.0)
    axes = fig.subplots(1, 2)
    for name, result in results.items():
        colour, marker = STYLES.get(name, ("black", "x"))
        rows = result["by_length"]
        centres = [(r["lo"] + r["hi"]) / 2 for r in rows]
        label = f"{name} ({result['parameters'] / 1e3:.0f}k params)"
        for ax, key in zip(axes, ("exact_match", "token_accuracy"), strict=True):
            ax.plot(centres, [r[key] for r in rows], marker=marker, color=colour, label=label)
    for ax, title in zip(axes, ("exact match", "token accuracy"), strict=True):
        ax.set(xlabel="source length (tokens)", ylabel=title, ylim=(-0.02, 1.02), title=title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Toy translation: the fixed vector's bottleneck, and attention removing it")
    return fig


def alignment_figure(weights: np.ndarray, source: Sequence[str], output: Sequence[str],
                     title: str = "") -> Figure:
    """alpha (T_out, S) as a grey-scale image, output tokens down, source tokens across
    (white = weight 1), the style of Bahdanau et al.'s Figure 3."""
    T, S = weights.shape
    fig = new_figure(max(4.0, 0.16 * S + 1.5), max(3.0, 0.16 * T + 1.2))
    ax = fig.subplots()
    ax.imshow(weights, cmap="gray", vmin=0.0, vmax=1.0, aspect="equal", interpolation="nearest")
    ax.set_xticks(np.arange(S), list(source), fontsize=6)
    ax.set_yticks(np.arange(T), list(output), fontsize=6)
    ax.xaxis.tick_top()
    ax.set_xlabel("source")
    ax.set_ylabel("generated target")
    if title:
        ax.set_title(title, fontsize=9)
    return fig
