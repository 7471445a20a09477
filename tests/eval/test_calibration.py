"""ECE against hand-computed examples, the L-BFGS temperature against a grid search, and
the fitted temperature travelling with the model into generation."""

import json

import pytest
import torch

from parrot.cli import main
from parrot.errors import ParrotError
from parrot.eval.calibration import (
    MIN_FIT,
    calibration_path,
    expected_calibration_error,
    fit_temperature,
    grid_temperature,
    measure,
    read_temperature,
    reliability,
)
from parrot.eval.predictions import choice_scores, load_choice_task

CONF = torch.tensor([0.1, 0.3, 0.35, 0.8, 0.9, 0.95])
RIGHT = torch.tensor([False, True, False, True, True, False])


def test_ece_with_equal_width_bins_matches_the_hand_computation():
    # bin (0, .5]: conf .25, acc 1/3; bin (.5, 1]: conf .8833, acc 2/3
    expected = 0.5 * abs(1 / 3 - 0.25) + 0.5 * abs(2 / 3 - (0.8 + 0.9 + 0.95) / 3)
    assert expected == pytest.approx(0.15)
    assert expected_calibration_error(CONF, RIGHT, 2, "width") == pytest.approx(expected)


def test_ece_with_equal_mass_bins_matches_the_hand_computation():
    # three bins of two: (.1, .3) acc .5; (.35, .8) acc .5; (.9, .95) acc .5
    expected = (abs(0.5 - 0.2) + abs(0.5 - 0.575) + abs(0.5 - 0.925)) / 3
    assert expected_calibration_error(CONF, RIGHT, 3, "mass") == pytest.approx(expected)


def test_a_confidence_on_a_bin_edge_goes_to_the_lower_bin():
    bins = reliability(torch.tensor([0.5, 0.51]), torch.tensor([True, False]), 2, "width")
    assert [b.count for b in bins] == [1, 1]
    assert bins[0].confidence == pytest.approx(0.5)


def test_perfectly_calibrated_predictions_have_an_ece_near_zero():
    g = torch.Generator().manual_seed(0)
    conf = torch.rand(200_000, generator=g)
    right = torch.rand(200_000, generator=g) < conf
    assert expected_calibration_error(conf, right, 10) < 0.005


def _overconfident(n=4000, classes=5, true_t=2.0, seed=0):
    """Logits whose labels are drawn from softmax(logits / true_t): the best T is true_t."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes, generator=g, dtype=torch.float64) * 3
    labels = torch.multinomial(torch.softmax(logits / true_t, -1), 1, generator=g)[:, 0]
    return logits, labels


def test_lbfgs_temperature_equals_a_grid_search():
    logits, labels = _overconfident(n=1000)
    coarse = grid_temperature(logits, labels, torch.arange(0.5, 4.0, 0.1, dtype=torch.float64))
    fine = torch.arange(coarse - 0.1, coarse + 0.1, 0.002, dtype=torch.float64)
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(grid_temperature(logits, labels, fine), abs=2e-3)
    assert fitted == pytest.approx(2.0, abs=0.25)


def test_temperature_scaling_lowers_ece_and_keeps_accuracy():
    logits, labels = _overconfident(seed=1)
    t = fit_temperature(logits[:2000], labels[:2000])
    before, _, _ = measure(logits[2000:], labels[2000:], 1.0)
    after, _, _ = measure(logits[2000:], labels[2000:], t)
    assert after.ece_width < before.ece_width / 2
    assert after.accuracy == before.accuracy and after.nll < before.nll


def test_too_few_predictions_to_fit_say_how_many_are_needed():
    logits, labels = _overconfident(n=MIN_FIT - 1)
    with pytest.raises(ParrotError, match=f"at least {MIN_FIT} scored predictions"):
        fit_temperature(logits, labels)


def test_choice_scores_are_summed_log_likelihoods(tmp_path):
    from parrot.model import ModelConfig, Transformer

    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=20, context_length=16, d_model=16, n_layers=1,
                                    n_heads=2)).eval()
    task = tmp_path / "task.jsonl"
    task.write_text(json.dumps({"context": "ab", "choices": ["c", "dd"], "answer": 1}) + "\n")
    items = load_choice_task(task)
    encode = lambda text: [ord(ch) - 97 for ch in text]  # noqa: E731
    scores, answers = choice_scores(model, encode, items, 16)
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([[0, 1, 3]]))[0].double(), -1)
    assert scores[0, 1].item() == pytest.approx((logp[1, 3] + logp[2, 3]).item(), abs=1e-6)
    assert answers.tolist() == [1]


def test_fitted_temperature_is_saved_and_used_by_generation(run_dir, tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("hello world " * 200)
    code = main(["eval", "calibration", str(run_dir), "--data", str(text), "--fit-temperature",
                 "--max-tokens", "300", "--seq-len", "64", "--out", str(tmp_path / "cal")])
    assert code == 0, capsys.readouterr().err
    saved = read_temperature(run_dir)
    assert saved is not None and saved > 0 and calibration_path(run_dir).is_file()
    assert (tmp_path / "cal" / "calibration.png").stat().st_size > 0
    import parrot

    llm = parrot.load(run_dir, quantize="none", max_batch=1, log=None)
    assert llm.sampling(temperature=0.5, calibrated=True).temperature == pytest.approx(0.5 * saved)
    calibration_path(run_dir).unlink()


def test_calibrated_sampling_without_a_fitted_temperature_is_refused(run_dir):
    import parrot

    llm = parrot.load(run_dir, quantize="none", max_batch=1, log=None)
    with pytest.raises(ParrotError, match="no fitted temperature"):
        llm.sampling(calibrated=True)


def test_too_little_text_to_fit_is_one_sentence_and_exit_code_two(run_dir, tmp_path, capsys):
    text = tmp_path / "short.txt"
    text.write_text("hello world hello")
    code = main(["eval", "calibration", str(run_dir), "--data", str(text), "--fit-temperature"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"at least {MIN_FIT}" in err
