"""Reliability diagrams: accuracy against confidence, before and after temperature scaling.

Each bar is one equal-width confidence bin; a calibrated model's bars reach the diagonal.
A bar below it is overconfidence (right less often than claimed), above it
underconfidence. The shaded part of each bar is the gap that ECE averages.
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure

from parrot.eval.calibration import Bin, Calibration
from parrot.viz.figure import new_figure


def _diagram(ax, bins: Sequence[Bin], summary: Calibration, title: str) -> None:
    width = 1.0 / len(bins)
    centres = [b.lo + width / 2 for b in bins]
    accuracy = [b.accuracy if b.count else 0.0 for b in bins]
    confidence = [b.confidence if b.count else 0.0 for b in bins]
    ax.bar(centres, accuracy, width=width, edgecolor="black", color="#4c72b0", label="accuracy")
    ax.bar(centres, [c - a for a, c in zip(accuracy, confidence, strict=True)], bottom=accuracy,
           width=width, color="#dd8452", alpha=0.45, edgecolor="#dd8452", hatch="//",
           label="gap to mean confidence")
    ax.plot([0, 1], [0, 1], "k--", linewidth=1)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy", title=title)
    ax.text(0.03, 0.95, f"T = {summary.temperature:.3f}\nECE (width) {summary.ece_width:.3f}\n"
            f"ECE (mass) {summary.ece_mass:.3f}\nNLL {summary.nll:.3f}\n"
            f"N = {summary.predictions}", va="top", fontsize=8,
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})
    ax.legend(loc="lower right", fontsize=7)


def reliability_figure(panels: Sequence[tuple[str, Sequence[Bin], Calibration]],
                       title: str = "") -> Figure:
    """One reliability diagram per (title, equal-width bins, summary), side by side."""
    fig = new_figure(4.0 * len(panels), 4.2)
    for ax, (name, bins, summary) in zip(fig.subplots(1, len(panels), squeeze=False)[0],
                                         panels, strict=True):
        _diagram(ax, bins, summary, name)
    if title:
        fig.suptitle(title)
    return fig


def figure_from_result(result: dict) -> Figure:
    """The diagrams of a `parrot.analysis.calibrate` result: before, and after if fitted."""
    panels = []
    for stage in ("before", "after"):
        if stage in result:
            bins = [Bin(**b) for b in result["bins"][stage]["width"]]
            summary = Calibration(**result[stage])
            panels.append((f"{stage} temperature scaling (held out)", bins, summary))
    return reliability_figure(panels, f"{result['model']}: {result['kind']} predictions")
