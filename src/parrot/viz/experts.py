"""Expert load of a mixture-of-experts run: how the router spread tokens over experts.

`expert_load_history(run_dir)` reads the per-layer loads the training loop logged in
metrics.jsonl (fields `expert_load` and `load_entropy`, see `parrot.training.balance`);
`experts_figure` draws, per layer, the experts' shares stacked over the steps (even
bands: balanced; one band swallowing the others: collapse) and below them the load
entropy against its maximum ln(n_experts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from parrot.errors import ParrotError
from parrot.rundir import read_metrics, require_run_dir
from parrot.viz.figure import new_figure, save_png

EXPERTS_PICTURE = "experts.png"


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
    steps, loads = load_history(rows)
    if not steps:
        return False
    n_layers = len(loads[0])
    fig = new_figure(2.6 * n_layers + 0.6, 2.8)
    axes = fig.subplots(1, n_layers, squeeze=False)[0]
    draw_expert_loads(list(axes), steps, loads)
    for ax in axes:
        ax.set_xlabel("step", fontsize=8)
    fig.suptitle("expert load per layer (each band is one expert)", fontsize=10)
    save_png(fig, path)
    return True


@dataclass(frozen=True)
class ExpertLoadHistory:
    """loads[s][layer][expert]: share of the top-k assignments at logged step steps[s];
    entropy[s][layer]: -sum f ln f of that layer's shares."""

    steps: list[int]
    loads: list[list[list[float]]]
    entropy: list[list[float]]

    @property
    def n_layers(self) -> int:
        return len(self.loads[0])

    @property
    def n_experts(self) -> int:
        return len(self.loads[0][0])


def expert_load_history(run_dir: str | Path) -> ExpertLoadHistory:
    """The logged expert loads of a run; ParrotError when the run logged none."""
    run = require_run_dir(run_dir)
    rows = read_metrics(run.root)
    steps, loads = load_history(rows)
    if not steps:
        raise ParrotError(f"{run.root} logged no expert loads; only runs of mixture-of-experts "
                          "models (model.n_experts > 0) have them.")
    # The training loop logs "load_entropy" in every row that has "expert_load".
    entropy = [r["load_entropy"] for r in rows if "expert_load" in r]
    return ExpertLoadHistory(steps, loads, entropy)


def experts_figure(history: ExpertLoadHistory, title: str = "") -> Figure:
    """Stacked expert shares per layer (top row) and load entropy per layer (bottom)."""
    n = history.n_layers
    fig = new_figure(2.6 * n + 0.8, 5.2)
    axes = fig.subplots(2, n, squeeze=False, sharex=True)
    draw_expert_loads(list(axes[0]), history.steps, history.loads)
    ceiling = math.log(history.n_experts)
    for layer, ax in enumerate(axes[1]):
        ax.plot(history.steps, [row[layer] for row in history.entropy], linewidth=1)
        ax.axhline(ceiling, color="black", linestyle="--", linewidth=0.6,
                   label=f"ln {history.n_experts}")
        ax.set_ylim(0, ceiling * 1.05)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[1][0].set_ylabel("load entropy (nats)", fontsize=8)
    axes[1][0].legend(fontsize=7, loc="lower right")
    fig.suptitle(title or f"expert load: {history.n_experts} experts, {n} layers", fontsize=10)
    return fig
