"""Expert-load metrics of mixture-of-experts runs: the metrics.jsonl fields and the picture.

Every `log_every` steps the loop adds to its metrics row
    "expert_load":  per layer, the fraction of top-k assignments each expert received
                    over the steps since the last log (each list sums to 1),
    "load_entropy": per layer, -sum_i f_i ln f_i of those fractions (max ln n_experts).
`checkpoint()` draws `experts.png` from those rows: per layer, the expert shares stacked
over the steps (even bands = balanced; one band swallowing the rest = collapse).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from parrot.model.moe import expert_loads, load_entropy, moe_layers
from parrot.utils.atomic import atomic_path

EXPERTS_PICTURE = "experts.png"


def moe_row(model: nn.Module) -> dict[str, Any]:
    """The expert-load fields for a metrics row ({} for a model without MoE layers).

    Reading them resets the loads accumulated since the previous row.
    """
    if not moe_layers(model):
        return {}
    loads = expert_loads(model, reset=True)
    return {"expert_load": [[round(float(f), 6) for f in load] for load in loads],
            "load_entropy": [round(load_entropy(load), 6) for load in loads]}


def load_history(rows: list[dict[str, Any]]) -> tuple[list[int], list[list[list[float]]]]:
    """(steps, loads[step][layer][expert]) from metrics rows that carry "expert_load"."""
    picked = [r for r in rows if "expert_load" in r]
    return [int(r["step"]) for r in picked], [r["expert_load"] for r in picked]


def draw_expert_loads(axes: list[Any], steps: list[int], loads: list[list[list[float]]],
                      title: str = "") -> None:
    """One stacked-area plot per layer onto `axes` (a sequence, one axis per layer)."""
    if not steps:
        return
    n_layers, n_experts = len(loads[0]), len(loads[0][0])
    for layer, ax in zip(range(n_layers), axes, strict=False):
        shares = [[loads[s][layer][e] for s in range(len(steps))] for e in range(n_experts)]
        ax.stackplot(steps, shares, linewidth=0.3, edgecolor="white")
        ax.axhline(0.5, color="black", linewidth=0.4, alpha=0.3)
        ax.set_ylim(0, 1)
        ax.set_xlim(steps[0], steps[-1] if steps[-1] > steps[0] else steps[0] + 1)
        ax.set_title(f"{title}layer {layer}", fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("share of assignments", fontsize=8)


def plot_expert_loads(rows: list[dict[str, Any]], path: str | Path) -> bool:
    """Write the expert-load picture; False (nothing written) when rows carry no loads."""
    from matplotlib.figure import Figure

    steps, loads = load_history(rows)
    if not steps:
        return False
    n_layers = len(loads[0])
    fig = Figure(figsize=(2.6 * n_layers + 0.6, 2.8), layout="constrained")
    axes = fig.subplots(1, n_layers, squeeze=False)[0]
    draw_expert_loads(list(axes), steps, loads)
    for ax in axes:
        ax.set_xlabel("step", fontsize=8)
    fig.suptitle("expert load per layer (each band is one expert)", fontsize=10)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return True
