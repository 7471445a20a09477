"""One self-contained HTML page for a training run, rendered from its metrics.jsonl.

Curves come from the logged records, never from printed text: training and validation
loss, learning rate, gradient norm, throughput, mixture-of-experts loads (records with an
`expert_load*` field: a list of per-expert loads, or one such list per layer) and text
samples (records with `sample` or `samples`). The PNGs are embedded as base64.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from parrot.errors import ParrotError
from parrot.rundir import RunDir, read_metrics
from parrot.training.loop import Hook
from parrot.viz.experts import EXPERTS_PICTURE, plot_expert_loads
from parrot.viz.figure import new_figure, png_data_uri, save_png

SERIES = (  # (title, y label, [(record field, legend)], log scale)
    ("Loss", "loss (nats/token)", [("loss", "train"), ("val_loss", "validation")], False),
    ("Learning rate", "learning rate", [("lr", "lr")], False),
    ("Gradient norm", "global L2 norm (before clipping)", [("grad_norm", "grad norm")], True),
    ("Throughput", "tokens / s", [("tokens_per_s", "tokens/s")], False),
    ("Preference rewards", "reward (DPO: β log π/π_ref; RM: r(x, y))",
     [("rewards/chosen", "chosen"), ("rewards/rejected", "rejected"),
      ("rewards/margins", "margin"), ("val_rewards/margins", "validation margin")], False),
    ("Preference accuracy", "share of pairs ranked right",
     [("rewards/accuracies", "train"), ("val_rewards/accuracies", "validation"),
      ("accuracy", "reward model, train"), ("val_accuracy", "reward model, validation")],
     False),
)
PREFERENCE_PICTURE = "preference.png"  # DPO / reward-model runs: rewards and accuracy


@dataclass(frozen=True)
class RunReport:
    """The figures of a run's report, by title, and its text samples [(step, text)]."""

    title: str
    figures: dict[str, Figure]
    samples: list[tuple[int, str]]
    config: dict[str, Any]


def load_rows(run_dir: str | Path) -> list[dict[str, Any]]:
    """The metrics records of a run directory (ParrotError if there are none)."""
    root = Path(run_dir)
    if not root.is_dir():
        raise ParrotError(f"{root} is not a directory; pass a run directory made by parrot train.")
    rows = [r for r in read_metrics(root) if isinstance(r, dict) and "step" in r]
    if not rows:
        raise ParrotError(f"{root} has no metrics.jsonl records; pass a run directory made by "
                          "parrot train (after it has logged at least one step).")
    return rows


def series(rows: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of every record that has a numeric `key`."""
    points = [(r["step"], r[key]) for r in rows
              if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
    return [p[0] for p in points], [float(p[1]) for p in points]


def curve_figure(rows: list[dict[str, Any]], title: str, ylabel: str,
                 fields: list[tuple[str, str]], log: bool) -> Figure | None:
    """One panel of curves against step, or None when no record has any of the fields."""
    drawn = [(series(rows, key), name) for key, name in fields]
    drawn = [(xy, name) for xy, name in drawn if xy[0]]
    if not drawn:
        return None
    fig = new_figure(7, 3.6)
    ax = fig.add_subplot()
    for (steps, values), name in drawn:
        style = {"marker": "o", "markersize": 3} if len(steps) < 30 else {}
        ax.plot(steps, values, label=name, linewidth=1.2, **style)
    if log and all(v > 0 for (_, values), _ in drawn for v in values):
        ax.set_yscale("log")
    ax.set(title=title, xlabel="step", ylabel=ylabel)
    ax.grid(alpha=0.3)
    if len(drawn) > 1:
        ax.legend()
    return fig


def expert_loads(rows: list[dict[str, Any]]) -> tuple[list[int], np.ndarray] | None:
    """(steps, loads (steps, experts)) from `expert_load*` fields, averaged over layers."""
    steps, loads = [], []
    for row in rows:
        key = next((k for k in row if k.startswith("expert_load")), None)
        if key is None:
            continue
        value = np.asarray(row[key], dtype=float)
        loads.append(value if value.ndim == 1 else value.reshape(-1, value.shape[-1]).mean(0))
        steps.append(row["step"])
    if not loads or len({x.shape for x in loads}) != 1:
        return None
    return steps, np.stack(loads)


def expert_figure(steps: list[int], loads: np.ndarray) -> Figure:
    """Each expert's share of routed tokens over training (balanced = 1 / n_experts)."""
    fig = new_figure(7, 3.6)
    ax = fig.add_subplot()
    shares = loads / np.clip(loads.sum(axis=1, keepdims=True), 1e-12, None)
    image = ax.imshow(shares.T, aspect="auto", cmap="viridis", interpolation="nearest",
                      extent=(steps[0], steps[-1], shares.shape[1] - 0.5, -0.5))
    ax.set(xlabel="step", ylabel="expert",
           title=f"MoE expert load share (balanced: {1 / shares.shape[1]:.3f})")
    fig.colorbar(image, ax=ax)
    return fig


def samples_of(rows: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """(step, text) for every logged sample."""
    found = []
    for row in rows:
        value = row.get("samples", row.get("sample"))
        texts = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        found += [(row["step"], str(t)) for t in texts]
    return found


def run_report(run_dir: str | Path) -> RunReport:
    """Build every figure of the report for `run_dir`."""
    rows = load_rows(run_dir)
    figures = {}
    for title, ylabel, fields, log in SERIES:
        fig = curve_figure(rows, title, ylabel, fields, log)
        if fig is not None:
            figures[title] = fig
    loads = expert_loads(rows)
    if loads is not None:
        figures["MoE expert loads"] = expert_figure(*loads)
    config_path = RunDir(Path(run_dir)).config
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    return RunReport(Path(run_dir).resolve().name, figures, samples_of(rows), config)


def preference_figure(rows: list[dict[str, Any]]) -> Figure | None:
    """Rewards (left) and ranking accuracy (right) of a DPO or reward-model run, or None."""
    panels = [p for p in SERIES if p[0].startswith("Preference")]
    drawn = [(panel, [f for f in panel[2] if series(rows, f[0])[0]]) for panel in panels]
    drawn = [(panel, fields) for panel, fields in drawn if fields]
    if not drawn:
        return None
    fig = new_figure(11, 3.6)
    for i, ((title, ylabel, _, _), fields) in enumerate(drawn, start=1):
        ax = fig.add_subplot(1, len(drawn), i)
        for key, name in fields:
            ax.plot(*series(rows, key), label=name, linewidth=1.2)
        ax.set(title=title, xlabel="step", ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


class RunPictures(Hook):
    """A training-loop hook: loss.png (and experts.png for MoE runs, preference.png for
    preference runs) redrawn from metrics.jsonl at every checkpoint. The CLI adds it; the
    Python API draws nothing."""

    def on_checkpoint(self, run_dir: Path) -> None:
        rows = read_metrics(run_dir)
        fig = curve_figure(rows, *SERIES[0])
        if fig is not None:
            save_png(fig, RunDir(Path(run_dir)).plot)
        plot_expert_loads(rows, Path(run_dir) / EXPERTS_PICTURE)
        fig = preference_figure(rows)
        if fig is not None:
            save_png(fig, Path(run_dir) / PREFERENCE_PICTURE)


def report_html(report: RunReport) -> str:
    """The report as one HTML page with the figures embedded."""
    parts = [f"<h1>Training run {html.escape(report.title)}</h1>"]
    parts += [f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' "
              f"src='{png_data_uri(fig)}'>" for title, fig in report.figures.items()]
    if report.samples:
        parts.append("<h2>Samples</h2>")
        parts += [f"<h3>step {step}</h3><pre>{html.escape(text)}</pre>"
                  for step, text in report.samples]
    if report.config:
        parts.append("<h2>Configuration</h2><pre>"
                     f"{html.escape(json.dumps(report.config, indent=2))}</pre>")
    style = ("body{font-family:sans-serif;max-width:60em;margin:auto}"
             "img{max-width:100%}pre{background:#f4f4f4;padding:0.6em;white-space:pre-wrap}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(report.title)}"
            f"</title><style>{style}</style></head><body>{''.join(parts)}</body></html>\n")
