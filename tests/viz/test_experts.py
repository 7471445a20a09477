"""The expert-load picture of a mixture-of-experts run (`parrot viz experts RUN_DIR`)."""

from __future__ import annotations

import json
import math

import pytest
from viz_helpers import make_run_dir

from parrot.cli import main
from parrot.errors import ParrotError
from parrot.viz.experts import expert_load_history, experts_figure, plot_expert_loads

PNG = b"\x89PNG\r\n\x1a\n"


def moe_run(root):
    """A run directory of a 2-layer, 4-expert model whose layer 1 collapses over time."""
    make_run_dir(root, n_experts=4, experts_per_token=2)
    rows = []
    for step in (10, 20, 30):
        top = 0.25 + 0.2 * step / 30
        collapsing = [top, (1 - top) / 3, (1 - top) / 3, (1 - top) / 3]
        rows.append({"step": step, "loss": 4.0, "expert_load": [[0.25] * 4, collapsing],
                     "load_entropy": [math.log(4), -sum(f * math.log(f) for f in collapsing)]})
    with (root / "metrics.jsonl").open("a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_history_reads_the_logged_loads(tmp_path):
    history = expert_load_history(moe_run(tmp_path / "run"))
    assert history.steps == [10, 20, 30]
    assert (history.n_layers, history.n_experts) == (2, 4)
    assert history.entropy[0][0] == pytest.approx(math.log(4))
    assert history.entropy[-1][1] < history.entropy[0][1]  # the collapsing layer
    fig = experts_figure(history)
    assert len(fig.axes) == 4


def test_cli_writes_the_picture_and_prints_entropies(tmp_path, capsys):
    run = moe_run(tmp_path / "run")
    out = tmp_path / "experts.png"
    assert main(["viz", "experts", str(run), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG
    printed = capsys.readouterr().out
    assert "step 30: load entropy per layer 1.386" in printed and str(out) in printed


def test_a_dense_run_is_one_clear_sentence(tmp_path, capsys):
    run = make_run_dir(tmp_path / "dense")
    with pytest.raises(ParrotError, match="logged no expert loads"):
        expert_load_history(run)
    assert main(["viz", "experts", str(run), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "mixture-of-experts" in err and len(err.strip().splitlines()) == 1


def test_training_picture_is_written_only_with_loads(tmp_path):
    rows = [json.loads(line) for line in
            (moe_run(tmp_path / "run") / "metrics.jsonl").read_text().splitlines()]
    assert plot_expert_loads(rows, tmp_path / "a.png")
    assert (tmp_path / "a.png").read_bytes()[:8] == PNG
    assert not plot_expert_loads([{"step": 1, "loss": 2.0}], tmp_path / "b.png")
    assert not (tmp_path / "b.png").exists()
