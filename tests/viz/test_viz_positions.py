import math

import numpy as np
import pytest

from parrot.errors import ParrotError
from parrot.viz import png_bytes, position_pattern, positions_figure
from parrot.viz.positions import rope_relative_scores


def test_sinusoidal_image_is_the_formula_table():
    pattern = position_pattern("sinusoidal", dim=8, length=12)
    for pos in range(12):
        for i in range(4):
            angle = pos / 10000 ** (2 * i / 8)
            assert pattern.values[pos, 2 * i] == pytest.approx(math.sin(angle), abs=1e-6)
            assert pattern.values[pos, 2 * i + 1] == pytest.approx(math.cos(angle), abs=1e-6)
    fig = positions_figure(pattern)
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), pattern.values)
    assert png_bytes(fig)[:4] == b"\x89PNG"


def test_rope_scores_depend_only_on_distance():
    dim, length, theta = 16, 20, 10000.0
    scores = rope_relative_scores(dim, length, theta)
    freqs = [theta ** (-2 * i / dim) for i in range(dim // 2)]
    for m in range(length):
        for n in range(length):
            want = sum(2 * math.cos((n - m) * w) for w in freqs)
            assert scores[m, n] == pytest.approx(want, abs=1e-3)
    fig = positions_figure(position_pattern("rope", dim=dim, length=length, theta=theta))
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), scores)


def test_alibi_image_is_minus_slope_times_distance_with_the_causal_mask():
    pattern = position_pattern("alibi", length=6, n_heads=8)
    slopes = [2.0 ** -(h + 1) for h in range(8)]   # 2^(-8/8 * (h+1)) for 8 heads
    for h in range(8):
        for q in range(6):
            for k in range(6):
                want = -slopes[h] * (q - k) if k <= q else -math.inf
                assert pattern.values[h, q, k] == pytest.approx(want)
    fig = positions_figure(pattern)
    image = fig.axes[0].images[0].get_array()
    assert np.array_equal(np.ma.getmaskarray(image), np.triu(np.ones((6, 6), bool), k=1))
    assert png_bytes(fig)[:4] == b"\x89PNG"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"kind": "xpos"}, "Unknown position kind"),
    ({"kind": "rope", "dim": 7}, "even dim"),
    ({"kind": "sinusoidal", "length": 0}, "length >= 1"),
])
def test_bad_sizes_are_refused(kwargs, message):
    with pytest.raises(ParrotError, match=message):
        position_pattern(**kwargs)
