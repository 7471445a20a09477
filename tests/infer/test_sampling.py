"""The sampler against its formulas: greedy limits, filters, the distribution, penalties."""

import math

import pytest
import torch

from parrot.errors import ParrotError
from parrot.infer.sampling import (
    RowParams,
    SamplingParams,
    apply_penalties,
    min_p_filter,
    sample,
    sample_rows,
    shape_logits,
    top_k_filter,
    top_p_filter,
)


def logits_rows(n_rows=4, vocab=50, seed=0):
    return torch.randn(n_rows, vocab, generator=torch.Generator().manual_seed(seed)) * 3


def draws(logits_row, params, n, seed=0):
    """n independent draws from one row, with one seeded generator."""
    g = torch.Generator().manual_seed(seed)
    return sample(logits_row.expand(n, -1), params, g)


def naive_top_p_keep(probs: list[float], p: float) -> set[int]:
    """The spec's definition, written out: add tokens by falling probability until mass ≥ p."""
    order = sorted(range(len(probs)), key=lambda i: -probs[i])
    kept, mass = set(), 0.0
    for i in order:
        kept.add(i)
        mass += probs[i]
        if mass >= p:
            break
    return kept


def test_temperature_zero_is_argmax():
    z = logits_rows()
    assert torch.equal(sample(z, SamplingParams(temperature=0.0)), z.argmax(-1))


def test_temperature_towards_zero_equals_greedy():
    z = logits_rows(n_rows=1, vocab=200)[0]
    for t in (1e-2, 1e-3):
        assert (draws(z, SamplingParams(temperature=t), 500) == z.argmax()).all()


def test_top_k_never_emits_outside_the_k_most_likely():
    z = logits_rows(n_rows=1, vocab=100, seed=3)[0]
    top5 = set(torch.topk(z, 5).indices.tolist())
    out = draws(z, SamplingParams(temperature=2.0, top_k=5), 3000)
    assert set(out.tolist()) <= top5 and len(set(out.tolist())) == 5


@pytest.mark.parametrize("p", [0.3, 0.5, 0.8, 0.81, 0.95, 0.999])
def test_top_p_keeps_the_smallest_set_reaching_p(p):
    probs = [0.05, 0.5, 0.15, 0.3]
    z = torch.tensor([probs]).log()
    kept = set(torch.isfinite(top_p_filter(z, p))[0].nonzero().flatten().tolist())
    assert kept == naive_top_p_keep(probs, p)


def test_top_p_matches_definition_on_random_rows():
    z = logits_rows(n_rows=20, vocab=30, seed=5)
    for p in (0.1, 0.6, 0.9):
        kept = torch.isfinite(top_p_filter(z, p))
        for row in range(z.shape[0]):
            probs = torch.softmax(z[row], -1).tolist()
            assert set(kept[row].nonzero().flatten().tolist()) == naive_top_p_keep(probs, p)


def test_top_k_and_min_p_by_hand():
    z = torch.tensor([[1.0, 3.0, 2.0, 3.0 - math.log(4)]])
    assert torch.isfinite(top_k_filter(z, 2)).tolist() == [[False, True, True, False]]
    # min_p 0.3: keep p_i >= 0.3 p_max; token 3 has exactly p_max / 4.
    assert torch.isfinite(min_p_filter(z, 0.3)).tolist() == [[False, True, True, False]]
    assert torch.isfinite(min_p_filter(z, 0.25)).tolist() == [[False, True, True, True]]


def test_empirical_distribution_matches_softmax_over_t():
    """Pearson chi-square with a fixed seed: 9 degrees of freedom, 0.1% critical value 27.88."""
    z = torch.tensor([2.0, 1.0, 0.5, 0.0, -0.5, -1.0, 1.5, 0.2, -2.0, 0.8])
    t, n = 0.7, 40_000
    expected = torch.softmax(z / t, -1) * n
    counts = torch.bincount(draws(z, SamplingParams(temperature=t), n, seed=1234), minlength=10)
    chi2 = (((counts - expected) ** 2) / expected).sum().item()
    assert chi2 < 27.88
    # And a wrong temperature is detected by the same test.
    wrong = torch.softmax(z / 1.0, -1) * n
    assert (((counts - wrong) ** 2) / wrong).sum().item() > 27.88


def test_same_seed_same_draws_different_seed_different_draws():
    z = logits_rows(n_rows=1, vocab=1000)[0]
    params = SamplingParams(temperature=1.0)
    assert torch.equal(draws(z, params, 50, seed=1), draws(z, params, 50, seed=1))
    assert not torch.equal(draws(z, params, 50, seed=1), draws(z, params, 50, seed=2))


def test_penalties_by_hand():
    z = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    counts = torch.tensor([[2.0, 1.0, 0.0, 0.0]])
    seen = torch.tensor([[True, True, False, True]])  # token 3 only in the prompt
    # repetition 2: positive seen logits halve, negative ones double; unseen unchanged.
    assert apply_penalties(z, counts, seen, repetition=2.0).tolist() == [[1.0, -2.0, 0.5, 1.5]]
    # frequency 0.5 · count, presence 1 · [count > 0]: only generated tokens.
    out = apply_penalties(z, counts, seen, frequency=0.5, presence=1.0)
    assert out.tolist() == [[2.0 - 1.0 - 1.0, -1.0 - 0.5 - 1.0, 0.5, 3.0]]


def test_penalty_changes_the_greedy_choice():
    z = torch.tensor([[2.0, 1.9]])
    params = SamplingParams(temperature=0, presence_penalty=0.5)
    counts, seen = torch.tensor([[1.0, 0.0]]), torch.tensor([[True, False]])
    assert sample(z, params, None, counts, seen).item() == 1


def test_filters_compose_in_order():
    z = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]])
    shaped = shape_logits(z, SamplingParams(temperature=0.5, top_k=3, top_p=0.9))
    assert torch.isfinite(shaped).tolist() == [[True, True, False, False, False]]
    assert shaped[0, 0].item() == 8.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(temperature=-0.1), "temperature must be"),
        (dict(top_p=0.0), "top_p must be in"),
        (dict(top_p=1.5), "top_p must be in"),
        (dict(top_k=-1), "top_k must be"),
        (dict(min_p=2.0), "min_p must be"),
        (dict(repetition_penalty=0.0), "repetition_penalty"),
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(temperature=float("nan")), "temperature must be"),
        (dict(stop=("",)), "stop strings"),
    ],
)
def test_bad_params_raise_parrot_error(kwargs, message):
    with pytest.raises(ParrotError, match=message):
        SamplingParams(**kwargs)


def test_a_lone_stop_string_is_one_stop():
    assert SamplingParams(stop="\n\n").stop == ("\n\n",)


MIXED = [
    SamplingParams(temperature=0.0),
    SamplingParams(temperature=0.7, seed=1),
    SamplingParams(temperature=1.3, top_k=5, seed=2),
    SamplingParams(temperature=0.9, top_p=0.6, seed=3),
    SamplingParams(temperature=1.0, min_p=0.2, seed=4),
    SamplingParams(temperature=1.1, top_k=10, top_p=0.8, min_p=0.05, seed=5),
    SamplingParams(top_k=1),
    SamplingParams(temperature=0.8, repetition_penalty=1.3, frequency_penalty=0.4,
                   presence_penalty=0.2, seed=6),
    SamplingParams(temperature=0.0, repetition_penalty=2.0),
    SamplingParams(temperature=1.0, top_k=80, seed=7),  # k >= V: off
]


@pytest.mark.parametrize("with_penalties", [False, True])
def test_batched_sampling_equals_sampling_row_by_row(with_penalties):
    vocab, steps = 50, 5
    g = torch.Generator().manual_seed(11)
    counts = torch.randint(0, 3, (len(MIXED), vocab), generator=g).float()
    seen = counts > 0
    state = (counts, seen) if with_penalties else (None, None)

    def generators():
        return [None if p.greedy else torch.Generator().manual_seed(p.seed) for p in MIXED]

    batched, alone = generators(), generators()
    rows = RowParams.of(MIXED)
    for step in range(steps):  # several draws: each generator's state advances alike
        logits = logits_rows(len(MIXED), vocab, seed=step)
        want = [int(sample(logits[i : i + 1], p, alone[i],
                           *(t[i : i + 1] for t in state if t is not None))[0])
                for i, p in enumerate(MIXED)]
        assert sample_rows(logits, rows, batched, *state).tolist() == want
