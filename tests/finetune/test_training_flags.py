"""`parrot finetune`, `distill` and `seq2seq train` take training knobs as `parrot train`
does (`--set train.FIELD=VALUE`); removed flags and unknown fields exit 2 with one sentence."""

from __future__ import annotations

import json

import pytest
from conftest import make_base, write_chats

from parrot.cli import main


def exit_code(argv: list[str]) -> int:
    try:
        return main([str(a) for a in argv])
    except SystemExit as stop:  # argparse's own errors
        return int(stop.code)


def commands(tmp_path) -> dict[str, list]:
    base, chats = make_base(tmp_path / "base"), write_chats(tmp_path / "chats.jsonl")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"source": f"s{i}", "target": f"t{i}"}) + "\n"
                             for i in range(10)))
    return {"finetune": ["finetune", base, "--data", chats],
            "distill": ["distill", "--teacher", base, "--student", "gpt-tiny"],
            "seq2seq": ["seq2seq", "train", "--data", pairs]}


@pytest.mark.parametrize("command", ["finetune", "distill", "seq2seq"])
@pytest.mark.parametrize("extra, message", [
    (["--steps", "3"], "unrecognized arguments: --steps 3"),
    (["--lr", "1e-3"], "unrecognized arguments: --lr"),
    (["--set", "train.stepz=3"], "Unknown config key 'train.stepz'"),
    (["--set", "train.steps=many"], "--set train.steps=many: expected a value of type int"),
])
def test_removed_flags_and_unknown_fields_exit_2_with_one_sentence(tmp_path, capsys, command,
                                                                   extra, message):
    argv = [*commands(tmp_path)[command], "--out", tmp_path / "out", "--quiet", *extra]
    assert exit_code(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].count(". ") == 0  # one sentence on one line
    assert not (tmp_path / "out").exists()


def test_finetune_has_no_model_section_to_set(tmp_path, capsys):
    argv = [*commands(tmp_path)["finetune"], "--out", tmp_path / "out", "--set",
            "model.d_model=8"]
    assert exit_code(argv) == 2
    assert "Unknown config key 'model.d_model'; valid keys: train." in capsys.readouterr().err


def test_resume_refuses_set(tmp_path, capsys):
    argv = [*commands(tmp_path)["distill"], "--out", tmp_path / "out", "--resume", "--set",
            "train.steps=3"]
    assert exit_code(argv) == 2
    assert "--set cannot change a resumed run" in capsys.readouterr().err
