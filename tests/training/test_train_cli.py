"""`parrot train/eval/sample` end to end on a tiny byte-level run, and every bad input."""

import json

import pytest
from train_helpers import SMALL, parrot, write_text

from parrot.cli import main
from parrot.rundir import is_run_dir, load_model


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    data = write_text(tmp / "text.txt")
    out = tmp / "run"
    result = parrot("train", "--preset", "tiny", "--data", str(data), *SMALL,
                    "--set", "train.steps=12", "--set", "eval_every=6", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out, data


def test_train_writes_a_complete_run_directory(run):
    out, _ = run
    for name in ("config.json", "tokenizer.json", "model.safetensors", "metrics.jsonl",
                 "loss.png", "checkpoint.pt", "data/train.npy", "data/val.npy"):
        assert (out / name).is_file(), name
    assert is_run_dir(out)
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["d_model"] == 32 and config["train"]["steps"] == 12
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "val_loss" in r] == [6, 12]
    assert {"loss", "lr", "grad_norm", "tokens_per_s"} <= set(rows[0])


def test_load_model_gives_the_trained_weights(run):
    out, _ = run
    model, tokenizer, cfg = load_model(out)
    assert cfg.d_model == 32 and tokenizer.vocab_size == 256
    assert model.num_parameters() > 0 and not model.training


def test_eval_prints_nll_perplexity_and_bits_per_byte(run):
    out, data = run
    part = data.parent / "part.txt"
    part.write_text(data.read_text()[:3000])
    result = parrot("eval", str(out), "--data", str(part))
    assert result.returncode == 0, result.stderr
    assert "perplexity" in result.stdout and "bits/byte" in result.stdout


def test_sample_continues_the_prompt(run):
    out, _ = run
    result = parrot("sample", str(out), "--prompt", "the ", "--max-new-tokens", "10",
                    "--temperature", "0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("the ")


def _fails(capsys, argv, *fragments):
    """Run the CLI in-process: exit code 2 and one error line naming every fragment."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("parrot: error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err


def test_errors_print_one_line_and_no_traceback_from_the_command(tmp_path):
    result = parrot("eval", str(tmp_path), "--data", str(tmp_path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "is neither a parrot run directory" in result.stderr


def test_unknown_preset_lists_the_valid_ones(tmp_path, capsys):
    _fails(capsys, ["train", "--preset", "huge", "--out", tmp_path / "r"],
           "Unknown preset", "shakespeare-baseline", "tiny")


def test_unknown_key_and_wrong_type_are_clear_errors(tmp_path, capsys):
    _fails(capsys, ["train", "--preset", "tiny", "--set", "model.colour=red",
                    "--out", tmp_path / "r"], "Unknown config key 'model.colour'")
    _fails(capsys, ["train", "--preset", "tiny", "--set", "train.lr=fast",
                    "--out", tmp_path / "r"], "train.lr=fast", "float")


def test_context_longer_than_positions_allow(tmp_path, capsys):
    _fails(capsys, ["train", "--preset", "tiny", "--set", "train.seq_len=65",
                    "--out", tmp_path / "r"], "longer than model.context_length=64")


def test_empty_or_too_small_dataset(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    _fails(capsys, ["train", "--preset", "tiny", "--data", empty, "--out", tmp_path / "a"])
    small = tmp_path / "small.txt"
    small.write_text("just a few words, far too few for one window of context\n")
    _fails(capsys, ["train", "--preset", "tiny", "--data", small, *SMALL,
                    "--out", tmp_path / "b"], "tokens, fewer than")


def test_shakespeare_preset_without_data_says_what_to_pass(tmp_path, capsys):
    _fails(capsys, ["train", "--preset", "shakespeare-baseline", "--out", tmp_path / "r"],
           "--data")


def test_a_directory_that_is_not_a_run(tmp_path, capsys):
    _fails(capsys, ["eval", tmp_path, "--data", tmp_path], "is neither a parrot run directory")
    _fails(capsys, ["sample", tmp_path / "missing"], "not a file, folder or pulled model name")
    _fails(capsys, ["train", "--preset", "tiny", "--out", tmp_path, "--resume"],
           "no checkpoint")


def test_an_existing_run_is_not_overwritten(run, capsys):
    out, data = run
    _fails(capsys, ["train", "--preset", "tiny", "--data", data, "--out", out],
           "already holds a run")
