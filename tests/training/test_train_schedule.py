import math

import pytest

from parrot.training.schedule import lr_at

LR, MIN, WARM, TOTAL = 1e-3, 1e-4, 100, 2000


def test_warmup_starts_small_and_reaches_the_peak_on_its_last_step():
    assert lr_at(0, LR, MIN, WARM, TOTAL) == pytest.approx(LR / WARM)
    assert lr_at(WARM - 1, LR, MIN, WARM, TOTAL) == pytest.approx(LR)


def test_warmup_is_linear():
    lrs = [lr_at(s, LR, MIN, WARM, TOTAL) for s in range(WARM)]
    steps = [b - a for a, b in zip(lrs, lrs[1:], strict=False)]
    assert max(steps) == pytest.approx(min(steps))


def test_cosine_starts_at_the_peak_passes_the_midpoint_and_ends_at_min_lr():
    assert lr_at(WARM, LR, MIN, WARM, TOTAL) == pytest.approx(LR)
    middle = WARM + (TOTAL - WARM) // 2
    assert lr_at(middle, LR, MIN, WARM, TOTAL) == pytest.approx((LR + MIN) / 2)
    assert lr_at(TOTAL, LR, MIN, WARM, TOTAL) == pytest.approx(MIN)
    assert lr_at(TOTAL + 50, LR, MIN, WARM, TOTAL) == pytest.approx(MIN)


def test_cosine_matches_the_formula_and_decreases():
    for step in range(WARM, TOTAL, 97):
        progress = (step - WARM) / (TOTAL - WARM)
        expected = MIN + (LR - MIN) * 0.5 * (1 + math.cos(math.pi * progress))
        assert lr_at(step, LR, MIN, WARM, TOTAL) == pytest.approx(expected)
    lrs = [lr_at(s, LR, MIN, WARM, TOTAL) for s in range(WARM, TOTAL + 1)]
    assert all(b <= a for a, b in zip(lrs, lrs[1:], strict=False))


def test_no_warmup_starts_at_the_peak():
    assert lr_at(0, LR, MIN, 0, TOTAL) == pytest.approx(LR)
