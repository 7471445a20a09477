"""What temperature does to the next-token distribution, and what top-k / top-p keep.

p_T = softmax(z / T) over the model's logits z at the prompt's last position. Temperature
keeps the order of tokens and only reshapes the probabilities; the top-k and top-p
filters are the sampler's own (`parrot.infer.sampling`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from parrot.errors import ParrotError
from parrot.infer.sampling import apply_temperature, top_k_filter, top_p_filter
from parrot.model import Transformer
from parrot.tokenizer import Tokenizer
from parrot.utils.text import visible_piece
from parrot.viz.figure import new_figure


@torch.no_grad()
def next_token_logits(model: Transformer, tokenizer: Tokenizer, prompt: str) -> torch.Tensor:
    """The model's logits (vocab_size,) for the token after `prompt` (the last window of
    context_length tokens if the prompt is longer)."""
    ids = tokenizer.encode(prompt, allowed_special="all")
    if not ids:
        raise ParrotError("The prompt is empty; give some text to continue.")
    ids = ids[-model.config.context_length:]
    model.eval()
    return model(torch.tensor([ids], dtype=torch.long))[0, -1].float()


@dataclass(frozen=True)
class SoftmaxView:
    """For each temperature: probabilities of the `shown` ids (highest logits first), and
    which of them survive top-k and top-p (masks over `shown`)."""

    temperatures: list[float]
    shown: list[int]
    labels: list[str]
    probs: np.ndarray            # (n_temperatures, len(shown))
    kept_top_k: np.ndarray       # (n_temperatures, len(shown)) bool
    kept_top_p: np.ndarray       # (n_temperatures, len(shown)) bool
    top_k: int
    top_p: float
    count_top_k: list[int]       # tokens of the whole vocabulary each filter keeps, per T
    count_top_p: list[int]


def parse_temperatures(text: str) -> list[float]:
    """'0.5,1,1.5' -> [0.5, 1.0, 1.5]; every temperature must be a number > 0."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ParrotError(f"Temperatures must be numbers separated by commas, like "
                          f"0.5,1,1.5; got {text!r}.") from None
    if not values or any(not np.isfinite(v) or v <= 0 for v in values):
        raise ParrotError(f"Temperatures must be positive numbers, like 0.5,1,1.5; got {text!r}.")
    return values


def softmax_view(logits: torch.Tensor, tokenizer: Tokenizer, temperatures: Sequence[float],
                 top_n: int = 20, top_k: int = 10, top_p: float = 0.9) -> SoftmaxView:
    """Probabilities softmax(z / T) of the top_n tokens at each T, with filter masks."""
    if top_k < 0 or not 0 < top_p <= 1:
        raise ParrotError(f"top-k must be >= 0 and top-p in (0, 1]; got {top_k} and {top_p}.")
    shown = torch.argsort(logits, descending=True, stable=True)[:top_n]
    rows, keep_k, keep_p = [], [], []
    for t in temperatures:
        z = apply_temperature(logits[None], t)                          # (1, V)
        rows.append(torch.softmax(z, dim=-1)[0])
        keep_k.append(torch.isfinite(top_k_filter(z, top_k))[0])
        keep_p.append(torch.isfinite(top_p_filter(z, top_p))[0])
    labels = [visible_piece(tokenizer.token_bytes(int(i))) for i in shown]
    pick = lambda xs: np.stack([x[shown].numpy() for x in xs])  # noqa: E731
    return SoftmaxView(list(temperatures), [int(i) for i in shown], labels, pick(rows),
                       pick(keep_k), pick(keep_p), top_k, top_p,
                       [int(k.sum()) for k in keep_k], [int(k.sum()) for k in keep_p])


KEPT_COLOURS = {(True, True): "#1f78b4", (True, False): "#33a02c",
                (False, True): "#a6cee3", (False, False): "#cccccc"}
KEPT_NAMES = {(True, True): "kept by both", (True, False): "kept by top-k only",
              (False, True): "kept by top-p only", (False, False): "dropped by both"}


def softmax_figure(view: SoftmaxView, prompt: str = "") -> Figure:
    """One bar chart per temperature on a shared probability axis, bars coloured by which
    of the top-k and top-p filters keep the token at that temperature."""
    n = len(view.temperatures)
    fig = new_figure(4.2 * n + 0.5, 5.8)
    axes = fig.subplots(1, n, sharey=True, sharex=True, squeeze=False)[0]
    y = np.arange(len(view.shown))
    for i, (ax, t) in enumerate(zip(axes, view.temperatures, strict=True)):
        kept = list(zip(view.kept_top_k[i].tolist(), view.kept_top_p[i].tolist(), strict=True))
        ax.barh(y, view.probs[i], color=[KEPT_COLOURS[k] for k in kept])
        ax.set_title(f"T = {t:g}: top-k={view.top_k} keeps {view.count_top_k[i]}, "
                     f"top-p={view.top_p:g} keeps {view.count_top_p[i]}", fontsize=8)
        ax.set_xlabel("probability")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, view.labels, family="monospace", fontsize=8)
    axes[0].invert_yaxis()
    handles = [Patch(color=KEPT_COLOURS[k], label=KEPT_NAMES[k]) for k in KEPT_COLOURS]
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=8)
    shown_prompt = prompt if len(prompt) <= 60 else "…" + prompt[-59:]
    fig.suptitle(f"next token after {shown_prompt!r}: softmax(z / T), the {len(y)} most "
                 "likely tokens", fontsize=10)
    return fig
