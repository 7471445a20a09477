import base64
import json
import re

import numpy as np
import pytest

from parrot.errors import ParrotError
from parrot.viz import report_html, run_report
from parrot.viz.report import expert_loads


def write_metrics(root, rows):
    root.mkdir(parents=True, exist_ok=True)
    (root / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


ROWS = [
    {"step": 10, "loss": 5.0, "lr": 1e-3, "grad_norm": 2.0, "tokens_per_s": 900.0},
    {"step": 20, "loss": 4.0, "lr": 2e-3, "grad_norm": 1.0, "tokens_per_s": 1000.0},
    {"step": 20, "val_loss": 4.4},
    {"step": 30, "loss": 3.5, "lr": 1e-3, "grad_norm": 0.5, "tokens_per_s": 1100.0},
]


def line_data(fig, label):
    for line in fig.axes[0].lines:
        if line.get_label() == label:
            return list(line.get_xdata()), list(line.get_ydata())
    raise AssertionError(f"no line {label}")


def test_curves_come_from_the_metrics_records(tmp_path):
    report = run_report(write_metrics(tmp_path / "run", ROWS))
    assert list(report.figures) == ["Loss", "Learning rate", "Gradient norm", "Throughput"]
    assert line_data(report.figures["Loss"], "train") == ([10, 20, 30], [5.0, 4.0, 3.5])
    assert line_data(report.figures["Loss"], "validation") == ([20], [4.4])
    assert line_data(report.figures["Learning rate"], "lr")[1] == [1e-3, 2e-3, 1e-3]
    assert line_data(report.figures["Throughput"], "tokens/s")[1] == [900.0, 1000.0, 1100.0]


def test_expert_loads_and_samples_appear_when_logged(tmp_path):
    rows = ROWS + [
        {"step": 30, "expert_load": [[1, 3], [3, 1]], "sample": "once upon a <time>"},
        {"step": 40, "expert_load": [[2, 2], [1, 3]], "samples": ["a", "b"]},
    ]
    report = run_report(write_metrics(tmp_path / "run", rows))
    steps, loads = expert_loads(rows)
    assert steps == [30, 40]
    np.testing.assert_allclose(loads, [[2, 2], [1.5, 2.5]])  # averaged over layers
    image = report.figures["MoE expert loads"].axes[0].images[0].get_array()
    np.testing.assert_allclose(image, [[0.5, 0.375], [0.5, 0.625]])  # (experts, steps) shares
    assert report.samples == [(30, "once upon a <time>"), (40, "a"), (40, "b")]
    page = report_html(report)
    assert "once upon a &lt;time&gt;" in page


def test_html_is_self_contained_with_embedded_pngs(run_dir):
    page = report_html(run_report(run_dir))
    images = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(images) == 4
    assert all(base64.b64decode(b)[:4] == b"\x89PNG" for b in images)
    assert "http" not in page.replace("http-equiv", "")
    assert "Configuration" in page and "&quot;steps&quot;: 3" in page


def test_missing_or_empty_run_directory_is_refused(tmp_path):
    with pytest.raises(ParrotError, match="is not a directory"):
        run_report(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ParrotError, match="has no metrics.jsonl records"):
        run_report(tmp_path / "empty")
