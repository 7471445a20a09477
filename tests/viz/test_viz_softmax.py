import math

import numpy as np
import pytest
import torch

from parrot.errors import ParrotError
from parrot.viz import next_token_logits, png_bytes, softmax_figure, softmax_view
from parrot.viz.softmax import parse_temperatures

PROMPT = "the king and the"


def naive_softmax(z: list[float], t: float) -> list[float]:
    top = max(z)
    e = [math.exp((x - top) / t) for x in z]
    return [x / sum(e) for x in e]


def test_logits_are_the_models_last_position(model, tokenizer):
    ids = tokenizer.encode(PROMPT)
    want = model(torch.tensor([ids]))[0, -1]
    torch.testing.assert_close(next_token_logits(model, tokenizer, PROMPT), want)


def test_probabilities_are_softmax_of_logits_over_temperature(model, tokenizer):
    logits = next_token_logits(model, tokenizer, PROMPT)
    view = softmax_view(logits, tokenizer, [0.5, 1.0, 2.0], top_n=8)
    z = logits.double().tolist()
    assert view.shown == sorted(range(len(z)), key=lambda i: -z[i])[:8]
    for row, t in zip(view.probs, [0.5, 1.0, 2.0], strict=True):
        p = naive_softmax(z, t)
        np.testing.assert_allclose(row, [p[i] for i in view.shown], rtol=1e-5)
    assert view.probs[0, 0] > view.probs[1, 0] > view.probs[2, 0]  # low T sharpens


def test_filters_keep_the_top_k_and_the_smallest_nucleus(model, tokenizer):
    logits = next_token_logits(model, tokenizer, PROMPT)
    view = softmax_view(logits, tokenizer, [1.0, 3.0], top_n=30, top_k=5, top_p=0.2)
    z = logits.double().tolist()
    for i, t in enumerate([1.0, 3.0]):
        assert view.kept_top_k[i].tolist() == [True] * 5 + [False] * 25
        assert view.count_top_k[i] == 5
        p = sorted(naive_softmax(z, t), reverse=True)
        nucleus = next(n for n in range(1, len(p) + 1) if sum(p[:n]) >= 0.2)
        assert view.count_top_p[i] == nucleus
        assert view.kept_top_p[i].tolist() == [j < nucleus for j in range(30)]
    assert view.count_top_p[1] > view.count_top_p[0]  # a flatter softmax needs more tokens


def test_figure_bars_are_the_probabilities(model, tokenizer):
    logits = next_token_logits(model, tokenizer, PROMPT)
    view = softmax_view(logits, tokenizer, [0.5, 1.5], top_n=10)
    fig = softmax_figure(view, PROMPT)
    for ax, row in zip(fig.axes, view.probs, strict=True):
        np.testing.assert_allclose([bar.get_width() for bar in ax.patches], row)
    assert png_bytes(fig)[:4] == b"\x89PNG"


def test_temperatures_parse_and_bad_ones_are_refused():
    assert parse_temperatures("0.5, 1,1.5") == [0.5, 1.0, 1.5]
    for bad in ("", "0", "-1", "hot", "nan"):
        with pytest.raises(ParrotError, match="Temperatures must be"):
            parse_temperatures(bad)


def test_empty_prompt_is_refused(model, tokenizer):
    with pytest.raises(ParrotError, match="prompt is empty"):
        next_token_logits(model, tokenizer, "")
