"""The report card: lm-evaluation-harness runs in-process over parrot's `LM` adapter, and
`parrot eval report A B` writes one HTML page comparing two models."""

import json
from types import SimpleNamespace

import pytest
import torch

from parrot.cli import main
from parrot.cli.evaluate import with_eval_command
from parrot.eval.tasks import continuation_task, lm_eval_task_yaml

pytest.importorskip("lm_eval")


def test_the_old_eval_form_still_means_perplexity():
    assert with_eval_command(["eval", "runs/x", "--data", "t"]) == \
        ["eval", "perplexity", "runs/x", "--data", "t"]
    assert with_eval_command(["eval", "report", "a"]) == ["eval", "report", "a"]


def test_continuation_items_hold_the_true_continuation_among_four():
    docs = [f"doc{i} " + " ".join(f"w{i}_{j}" for j in range(40)) for i in range(6)]
    items = continuation_task(docs, 20, seed=1)
    assert items == continuation_task(docs, 20, seed=1)
    for item in items:
        assert len(item["choices"]) == 4
        doc = next(d for d in docs if item["context"] in d)
        assert (item["context"] + item["choices"][item["answer"]]) in doc
    assert "dataset_path: json" in lm_eval_task_yaml("t", "x.jsonl")


def test_parrot_lm_loglikelihood_is_the_models_own(run_dir):
    from parrot.eval.harness import ParrotLM
    from parrot.rundir import load_model

    model, tok, _ = load_model(run_dir)
    lm = ParrotLM(model, tok)
    (score, greedy), = lm.loglikelihood([SimpleNamespace(args=("hello", " world"))])
    whole, n = tok.encode("hello world"), len(tok.encode("hello"))
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([whole[:-1]]))[0].double(), -1)
    expected = sum(logp[t - 1, whole[t]].item() for t in range(n, len(whole)))
    assert score == pytest.approx(expected, abs=1e-6) and isinstance(greedy, bool)


@pytest.mark.slow  # the harness and two models: ~30 s here
def test_report_compares_two_models_in_one_page(run_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    text = tmp_path / "text.txt"
    text.write_text("hello world, the quick brown fox jumps over the lazy dog. " * 40)
    task = tmp_path / "hello-task.jsonl"
    docs = [text.read_text()[i * 7:] for i in range(8)]
    task.write_text("".join(json.dumps(r) + "\n" for r in continuation_task(docs, 12, seed=0)))
    out = tmp_path / "card.html"
    code = main(["eval", "report", str(run_dir), str(run_dir), "--text", str(text),
                 "--task", str(task), "--limit", "12", "--max-tokens", "200", "--out", str(out)])
    assert code == 0
    page = out.read_text()
    assert page.count("data:image/png;base64,") == 4 and "bits per byte" in page
    record = json.loads(out.with_suffix(".json").read_text())
    a, b = record["models"]
    assert a["tasks"]["parrot_hello_task"]["acc"] == b["tasks"]["parrot_hello_task"]["acc"]
    assert a["calibration_next_token"]["after"]["temperature"] > 0


def test_report_refuses_three_models(run_dir, tmp_path, capsys):
    code = main(["eval", "report", str(run_dir), str(run_dir), str(run_dir), "--out",
                 str(tmp_path / "x.html")])
    assert code == 2 and "one or two models" in capsys.readouterr().err
