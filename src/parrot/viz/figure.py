"""Figures without a display: every picture is a `matplotlib.figure.Figure` drawn by Agg.

Figures are built directly (not through `pyplot`), so nothing global is touched, no window
opens, and a notebook can still show the returned figure.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

from matplotlib.figure import Figure

from parrot.utils.atomic import atomic_path

# Alternating background colours that keep neighbouring tokens apart (colour-blind safe).
TOKEN_COLOURS = ("#a6cee3", "#fdbf6f", "#b2df8a", "#fb9a99", "#cab2d6", "#ffff99")


def new_figure(width: float, height: float) -> Figure:
    """An empty figure of `width` x `height` inches with constrained layout."""
    return Figure(figsize=(width, height), layout="constrained")


def png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    """The figure rendered to PNG by the Agg backend."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def png_data_uri(fig: Figure, dpi: int = 100) -> str:
    """The figure as a `data:image/png;base64,...` URI, for self-contained HTML."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(fig, dpi)).decode("ascii")


def save_png(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write the figure as a PNG atomically; returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(png_bytes(fig, dpi))
    return path

