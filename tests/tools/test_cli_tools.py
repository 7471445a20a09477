"""The tools commands: parrot sandbox run, ask, agent and generate --json-schema."""

import json
import shutil

import jsonschema
import pytest

from parrot.cli import main

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")


@needs_bwrap
def test_sandbox_run_prints_the_limits_and_the_output(tmp_path, capsys):
    script = tmp_path / "hello.py"
    script.write_text("print(2 ** 10)")
    assert main(["sandbox", "run", str(script)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "1024" and "no network" in err and "wall 10 s" in err


@needs_bwrap
def test_sandbox_run_reports_a_timeout(tmp_path, capsys):
    script = tmp_path / "spin.py"
    script.write_text("while True:\n    pass")
    assert main(["sandbox", "run", str(script), "--timeout", "0.5"]) == 1
    assert "time limit" in capsys.readouterr().err


def test_sandbox_run_of_a_missing_file_is_one_sentence(tmp_path, capsys):
    assert main(["sandbox", "run", str(tmp_path / "nope.py")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_agent_with_an_unknown_tool_exits_2(run_dir, capsys):
    assert main(["agent", str(run_dir), "q", "--tools", "calculator,hammer"]) == 2
    assert "there is no tool 'hammer'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def long_run_dir(tmp_path_factory):
    """A tiny random model with room for the ReAct instructions (about 600 byte tokens)."""
    import torch

    from parrot.model import ModelConfig, Transformer
    from parrot.rundir import save_weights, write_config
    from parrot.tokenizer import Tokenizer

    path = tmp_path_factory.mktemp("long")
    tok = Tokenizer.train(["hello world " * 20], vocab_size=262, special_tokens=["<|endoftext|>"])
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=262, context_length=1024, d_model=32, n_layers=2, n_heads=2)
    write_config(path, {"model": cfg.to_dict()})
    save_weights(path, Transformer(cfg))
    tok.save(path)
    return path


def test_ask_react_on_a_short_context_says_the_prompt_is_too_long(run_dir, capsys):
    assert main(["ask", str(run_dir), "What is 2 + 2?", "--strategy", "react"]) == 2
    assert "context holds 192" in capsys.readouterr().err


@needs_bwrap
def test_ask_react_runs_the_loop_on_a_model(long_run_dir, capsys):
    code = main(["ask", str(long_run_dir), "What is 2 + 2?", "--strategy", "react",
                 "--max-steps", "2", "--max-new-tokens", "8"])
    out = capsys.readouterr().out
    assert code in (0, 1) and "Observation:" in out and "answer:" in out


def test_generate_with_a_json_schema_prints_a_matching_document(run_dir, tmp_path, capsys):
    schema = {"type": "object", "properties": {"n": {"type": "integer"},
                                               "w": {"type": "string", "maxLength": 6}},
              "required": ["n", "w"]}
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(schema))
    assert main(["generate", str(run_dir), "--prompt", "hello", "--json-schema", str(path),
                 "--json", "--temperature", "1", "--seed", "3", "--max-new-tokens", "40"]) == 0
    jsonschema.validate(json.loads(json.loads(capsys.readouterr().out)["text"]), schema)


def test_generate_with_an_unsupported_schema_names_the_keyword(run_dir, tmp_path, capsys):
    path = tmp_path / "schema.json"
    path.write_text(json.dumps({"type": "string", "pattern": "a+"}))
    assert main(["generate", str(run_dir), "--prompt", "x", "--json-schema", str(path)]) == 2
    assert "'pattern'" in capsys.readouterr().err
