"""Calibration: do a model's probabilities mean what they say? (Guo et al. 2017)

A prediction made with confidence p (the top class's probability) should be right a
fraction p of the time. Predictions are grouped into bins of confidence and

    ECE = sum_b (|B_b| / N) * | acc(B_b) - conf(B_b) |

with acc the fraction right and conf the mean confidence in bin b. Equal-width bins
split [0, 1] into M intervals (the reliability diagram's bars); equal-mass bins hold
N / M predictions each, so no bin is nearly empty where confidences crowd together.

Temperature scaling divides every logit by one T > 0 fitted on held-out data to
minimise the negative log-likelihood; it changes confidences, never the argmax, so
accuracy stays. T > 1 softens an overconfident model. T is fitted here by L-BFGS on
log T (so T stays positive) and checked in tests against a grid search.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from parrot.errors import ParrotError
from parrot.utils.atomic import atomic_write_json

SCHEMES = ("width", "mass")
MIN_FIT = 100  # scored predictions needed in the validation split to fit T
CALIBRATION_FILE = "calibration.json"


@dataclass(frozen=True)
class Bin:
    lo: float
    hi: float
    count: int
    confidence: float  # mean confidence of the bin's predictions (0 when empty)
    accuracy: float  # fraction right (0 when empty)


def bin_edges(confidence: torch.Tensor, n_bins: int, scheme: str) -> list[tuple[int, int]]:
    """Index ranges [start, stop) into the confidences sorted ascending, one per bin.

    width: bin b holds confidences in (b/M, (b+1)/M] (the first bin includes 0);
    mass: the sorted predictions cut into M runs of N // M or N // M + 1.
    """
    if scheme not in SCHEMES:
        raise ParrotError(f"Binning must be one of {', '.join(SCHEMES)}, got {scheme!r}.")
    ordered = confidence.sort().values.double()
    n = len(ordered)
    if scheme == "mass":
        cuts = [round(b * n / n_bins) for b in range(n_bins + 1)]
    else:
        bounds = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
        cuts = [0, *torch.searchsorted(ordered, bounds[1:-1], right=True).tolist(), n]
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def reliability(confidence: torch.Tensor, correct: torch.Tensor, n_bins: int = 15,
                scheme: str = "width") -> list[Bin]:
    """The bins of a reliability diagram: count, mean confidence, accuracy per bin."""
    order = confidence.argsort()
    conf, right = confidence[order].double(), correct[order].double()
    bins = []
    for b, (start, stop) in enumerate(bin_edges(confidence, n_bins, scheme)):
        part_c, part_r = conf[start:stop], right[start:stop]
        lo, hi = (b / n_bins, (b + 1) / n_bins) if scheme == "width" else \
            (float(conf[start]) if stop > start else 0.0, float(conf[stop - 1]) if stop > start else 0.0)
        count = stop - start
        bins.append(Bin(lo, hi, count, float(part_c.mean()) if count else 0.0,
                        float(part_r.mean()) if count else 0.0))
    return bins


def expected_calibration_error(confidence: torch.Tensor, correct: torch.Tensor,
                               n_bins: int = 15, scheme: str = "width") -> float:
    """ECE = sum_b |B_b| / N * |acc(B_b) - conf(B_b)| (module docstring)."""
    n = len(confidence)
    if n == 0:
        raise ParrotError("ECE needs at least one prediction.")
    return sum(b.count / n * abs(b.accuracy - b.confidence)
               for b in reliability(confidence, correct, n_bins, scheme))


def nll_at(logits: torch.Tensor, labels: torch.Tensor, temperature: torch.Tensor | float,
           chunk: int = 1024) -> torch.Tensor:
    """Mean -log softmax(logits / T)[label] over rows of logits (N, C), in chunks of rows
    (a large vocabulary times many tokens would not fit at once)."""
    total = torch.zeros((), dtype=torch.float64)
    for start in range(0, len(logits), chunk):
        rows = logits[start:start + chunk].double() / temperature
        total = total + F.cross_entropy(rows, labels[start:start + chunk], reduction="sum")
    return total / len(logits)


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 100) -> float:
    """argmin_T NLL(softmax(logits / T), labels), by L-BFGS on t = log T from T = 1."""
    if len(logits) < MIN_FIT:
        raise ParrotError(f"Fitting a temperature needs at least {MIN_FIT} scored predictions "
                          f"in the validation split, got {len(logits)}; give more text (or "
                          f"more questions), about {2 * MIN_FIT} predictions in all.")
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter,
                                  line_search_fn="strong_wolfe", tolerance_grad=1e-9,
                                  tolerance_change=1e-12)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = nll_at(logits, labels, log_t.exp())
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())


def grid_temperature(logits: torch.Tensor, labels: torch.Tensor,
                     grid: torch.Tensor) -> float:
    """The temperature of `grid` with the lowest NLL (the test oracle of `fit_temperature`)."""
    losses = torch.stack([nll_at(logits, labels, float(t)) for t in grid])
    return float(grid[losses.argmin()])


@dataclass(frozen=True)
class Calibration:
    """How one set of predictions is calibrated at one temperature."""

    temperature: float
    predictions: int
    accuracy: float
    nll: float
    ece_width: float
    ece_mass: float
    n_bins: int


def measure(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0,
            n_bins: int = 15) -> tuple[Calibration, torch.Tensor, torch.Tensor]:
    """(summary, confidence (N,), correct (N,)) of softmax(logits / T) against labels."""
    confidence = torch.cat([torch.softmax(logits[i:i + 1024].double() / temperature, -1)
                            .max(-1).values for i in range(0, len(logits), 1024)])
    correct = torch.cat([logits[i:i + 1024].argmax(-1) for i in range(0, len(logits), 1024)]
                        ) == labels
    summary = Calibration(
        temperature, len(labels), float(correct.double().mean()),
        float(nll_at(logits, labels, temperature)),
        expected_calibration_error(confidence, correct, n_bins, "width"),
        expected_calibration_error(confidence, correct, n_bins, "mass"), n_bins)
    return summary, confidence, correct


def calibration_path(model_path: str | Path) -> Path:
    """Where a model's fitted temperature lives: calibration.json inside a model folder,
    FILE.calibration.json beside a single-file model (GGUF)."""
    path = Path(model_path)
    return path / CALIBRATION_FILE if path.is_dir() else \
        path.with_name(path.name + "." + CALIBRATION_FILE)


def save_temperature(model_path: str | Path, temperature: float, record: dict) -> Path:
    """Write {"temperature": T, ...record} beside the model (atomically)."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise ParrotError(f"The fitted temperature {temperature} is not a positive number.")
    path = calibration_path(model_path)
    atomic_write_json(path, {"temperature": temperature, **record})
    return path


def read_temperature(model_path: str | Path) -> float | None:
    """The saved temperature of a model, None when it has none."""
    path = calibration_path(model_path)
    if not path.is_file():
        return None
    try:
        value = float(json.loads(path.read_text(encoding="utf-8"))["temperature"])
    except (ValueError, KeyError, TypeError) as err:
        raise ParrotError(f"{path} is not a calibration file ({err}); delete it or fit the "
                          "temperature again with parrot eval calibration.") from None
    return value


def as_dict(calibration: Calibration) -> dict:
    return asdict(calibration)
