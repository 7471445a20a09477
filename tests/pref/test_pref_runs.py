"""Reward-model and DPO runs: run directories like any other, resumed bit-exactly, and the
CLI's one-sentence errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pref_helpers import TRAIN, make_base, write_jsonl, write_prefs
from safetensors.torch import load_file

import parrot
from parrot.cli import main
from parrot.data.preference import PreferenceSampler
from parrot.errors import ParrotError
from parrot.training.dpo import dpo
from parrot.training.finetune import FinetuneConfig
from parrot.training.objectives_pref import DPOConfig
from parrot.training.reward import load_reward_model, score_file, train_reward

TRL_NAMES = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
             "logps/chosen", "logps/rejected")


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r.get("loss", r.get("val_loss"))) for r in rows(run)]


def saved(run: Path) -> dict[str, torch.Tensor]:
    for name in ("adapter.safetensors", "reward.safetensors", "model.safetensors"):
        if (run / name).exists():
            return load_file(str(run / name))
    raise AssertionError(f"{run} holds no weights")


@pytest.fixture
def setup(tmp_path) -> tuple[Path, Path]:
    return make_base(tmp_path / "base"), write_prefs(tmp_path / "prefs.jsonl")


def crash_after(monkeypatch, batches: int) -> None:
    real, calls = PreferenceSampler.next, {"n": 0}

    def next_or_die(self):
        calls["n"] += 1
        if calls["n"] > batches:
            raise KeyboardInterrupt("stopped")
        return real(self)

    monkeypatch.setattr(PreferenceSampler, "next", next_or_die)


def run_dpo(base, data, out, method="lora", **kw):
    return dpo(base, data, out, FinetuneConfig(method=method, rank=2, dropout=0.1),
               DPOConfig(beta=0.2, **kw), overrides=TRAIN, show_progress=False)


def run_reward(base, data, out, method="lora"):
    return train_reward(base, data, out, FinetuneConfig(method=method, rank=2), TRAIN,
                        show_progress=False)


@pytest.mark.parametrize("kind, method", [("dpo", "lora"), ("dpo", "full"), ("reward", "lora"),
                                          ("reward", "full")])
def test_a_stopped_run_resumes_bit_exactly(tmp_path, monkeypatch, setup, kind, method):
    base, data = setup
    start = run_dpo if kind == "dpo" else run_reward
    whole = start(base, data, tmp_path / "whole", method)
    with monkeypatch.context() as patch:
        crash_after(patch, 3)  # dies in step 4; the last checkpoint is after step 2
        with pytest.raises(KeyboardInterrupt):
            start(base, data, tmp_path / "cut", method)
    resume = dpo if kind == "dpo" else train_reward
    resumed = resume(base, data, tmp_path / "cut", resume=True, show_progress=False)
    assert losses(tmp_path / "cut") == losses(tmp_path / "whole")
    a, b = saved(tmp_path / "whole"), saved(tmp_path / "cut")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.final_val_loss == whole.final_val_loss


def test_dpo_logs_trl_metric_names_and_starts_at_log_2(tmp_path, setup):
    result = run_dpo(*setup, tmp_path / "run")
    logged = rows(tmp_path / "run")
    assert logged[0]["step"] == 0 and logged[0]["val_loss"] == pytest.approx(0.693147, abs=1e-6)
    assert logged[0]["val_rewards/margins"] == 0.0  # policy = reference, same batches
    assert all(name in logged[1] for name in TRL_NAMES)
    assert all(f"val_{name}" in logged[-1] for name in TRL_NAMES)
    assert result.final_val_loss < result.metrics["val_loss_before"]


def test_a_dpo_lora_run_loads_chats_and_merges_like_a_finetune_run(tmp_path, setup, capsys):
    run_dpo(*setup, tmp_path / "dpo")
    llm = parrot.load(tmp_path / "dpo", log=None, quantize="none")
    tokens = torch.tensor([llm.encode("<|im_start|>user\nsay 1<|im_end|>\n")])
    unmerged = llm.model(tokens)
    assert main(["merge", str(tmp_path / "dpo"), "--out", str(tmp_path / "merged")]) == 0
    merged = parrot.load_model(tmp_path / "merged", log=None)[0]
    torch.testing.assert_close(merged(tokens), unmerged, atol=1e-4, rtol=1e-4)
    assert len(llm.chat([{"role": "user", "content": "hi"}], max_new_tokens=3,
                        temperature=0).token_ids) >= 1


def test_reward_model_scores_pairs_and_refuses_to_chat(tmp_path, setup, capsys):
    base, data = setup
    assert main(["reward", "train", str(base), "--data", str(data), "--out",
                 str(tmp_path / "rm"), "--quiet", "--rank", "2", *sum(
                     (["--set", t] for t in TRAIN), [])]) == 0
    assert (tmp_path / "rm" / "preference.png").is_file()  # accuracy over training
    capsys.readouterr()
    assert main(["reward", "score", str(tmp_path / "rm"), "--data", str(data)]) == 0
    out = capsys.readouterr().out
    scores = score_file(tmp_path / "rm", data)
    assert f"accuracy {scores.accuracy:.4f} (12 pairs)" in out and out.count("pair ") == 12
    model, _, _, _ = load_reward_model(tmp_path / "rm")
    assert model.head.weight.shape == (1, 32)
    assert main(["chat", str(tmp_path / "rm")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is a reward model" in err
    with pytest.raises(ParrotError, match="is a reward model"):
        parrot.load(tmp_path / "rm", log=None)


@pytest.mark.parametrize("record, message", [
    ({"prompt": "p", "chosen": "same", "rejected": "same"}, "identical"),
    ({"prompt": "p", "chosen": "yes"}, "no 'rejected'"),
    ({"prompt": "p", "rejected": "no"}, "no 'chosen'"),
    ({"chosen": "abc", "rejected": "xyz"}, "no common prefix"),
])
def test_bad_pairs_exit_2_with_one_sentence(tmp_path, capsys, record, message):
    data = write_jsonl(tmp_path / "bad.jsonl", [record])
    base = make_base(tmp_path / "base")
    for command in (["align", "dpo"], ["reward", "train"]):
        code = main([*command, str(base), "--data", str(data), "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err.strip()
        assert code == 2 and message in err and err.count("\n") == 0


@pytest.mark.parametrize("beta", ["0", "-1"])
def test_beta_not_positive_exits_2(tmp_path, capsys, setup, beta):
    base, data = setup
    code = main(["align", "dpo", str(base), "--data", str(data), "--beta", beta,
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--beta must be positive" in err and err.count("\n") == 0


def test_a_dpo_run_is_served_like_any_model(tmp_path, setup):
    import time

    from fastapi.testclient import TestClient

    from parrot.serve import Loaded, ServeSettings, create_app

    run_dpo(*setup, tmp_path / "dpo")

    def load() -> Loaded:  # what `parrot serve RUN` loads
        llm = parrot.load(tmp_path / "dpo", quantize="none", log=None)
        return Loaded(llm.model, llm.tokenizer, llm.template, engine=llm.engine)

    app = create_app(load, ServeSettings(model_name="dpo"))
    with TestClient(app) as client:
        deadline = time.monotonic() + 30
        while client.get("/health").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        reply = client.post("/v1/chat/completions", json={
            "model": "dpo", "max_tokens": 3, "temperature": 0,
            "messages": [{"role": "user", "content": "say 1"}]})
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["role"] == "assistant"


def test_reward_scores_of_answers_match_the_pair_scores(tmp_path, setup):
    from parrot.data.preference import load_preferences
    from parrot.training.reward import score_answers

    base, data = setup
    run_reward(base, data, tmp_path / "rm")
    model, tok, template, max_len = load_reward_model(tmp_path / "rm")
    pairs = load_preferences(data)
    items = [(p.prompt, p.chosen[0]["content"]) for p in pairs]
    items += [(p.prompt, p.rejected[0]["content"]) for p in pairs]
    got = score_answers(model, tok, template, items, max_len, batch_size=5)
    want = score_file(tmp_path / "rm", data).rewards
    torch.testing.assert_close(got, torch.cat([want[:, 0], want[:, 1]]), atol=1e-5, rtol=1e-5)


@pytest.mark.slow  # two CLI runs and a subprocess killed mid-run (~30 s here)
def test_cli_dpo_killed_with_sigkill_resumes_bit_exactly(tmp_path, setup):
    import os
    import signal
    import subprocess
    import sys
    import time

    base, data = setup
    command = ["align", "dpo", str(base), "--data", str(data), "--rank", "2", "--quiet"]
    flags = [*command]
    for knob in ("steps=20", "batch_size=3", "checkpoint_every=3", "eval_every=10", "threads=1"):
        flags += ["--set", f"train.{knob}"]
    assert main([*flags, "--out", str(tmp_path / "whole")]) == 0
    assert (tmp_path / "whole" / "preference.png").is_file()
    cut = tmp_path / "cut"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    child = subprocess.Popen([sys.executable, "-m", "parrot", *flags, "--out", str(cut)],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        metrics = cut / "metrics.jsonl"
        if metrics.exists() and any(json.loads(r).get("step", 0) >= 7
                                    for r in metrics.read_text().splitlines() if r.strip()):
            break
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)  # mid-run: no chance to write anything more
    child.wait()
    step = torch.load(cut / "checkpoint.pt", weights_only=False)["step"]
    assert 3 <= step < 20
    assert main([*command, "--out", str(cut), "--resume"]) == 0
    assert losses(cut) == losses(tmp_path / "whole")
    a, b = saved(tmp_path / "whole"), saved(cut)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_cli_prints_held_out_results(tmp_path, setup, capsys):
    base, data = setup
    knobs = sum((["--set", t] for t in TRAIN), [])
    assert main(["align", "dpo", str(base), "--data", str(data), "--rank", "2", "--quiet",
                 "--out", str(tmp_path / "dpo"), *knobs]) == 0
    out = capsys.readouterr().out
    assert "held-out DPO loss 0.6931 before" in out and "held-out reward accuracy" in out
    assert (tmp_path / "dpo" / "preference.png").is_file()


def test_another_reference_model_is_used_and_cached(tmp_path, setup):
    base, data = setup
    other = make_base(tmp_path / "other", seed=1)
    result = dpo(base, data, tmp_path / "run", FinetuneConfig(rank=2), DPOConfig(beta=0.2),
                 reference=other, overrides=TRAIN, show_progress=False)
    assert result.metrics["val_loss_before"] != pytest.approx(0.693147, abs=1e-3)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["dpo"]["reference"] == str(other.resolve())
    assert len(list((tmp_path / "run" / "ref_cache").glob("ref-*.pt"))) == 2  # train, val
