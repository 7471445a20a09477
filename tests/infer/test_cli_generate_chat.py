"""`parrot generate` and `parrot chat` on a tiny run directory built in the test."""

import io
import json

import pytest

from parrot import cli


@pytest.fixture
def parrot(monkeypatch, capsys):
    """Run the CLI in-process with only these commands; returns (exit code, out, err)."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("generate", "chat"))

    def call(*argv, stdin=None):
        if stdin is not None:
            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return call


def test_generate_json_reports_tokens_and_stats(run_dir, parrot):
    code, out, _ = parrot("generate", run_dir, "--prompt", "hello", "--json",
                          "--temperature", "0", "--max-new-tokens", "5")
    result = json.loads(out)
    assert code == 0 and len(result["token_ids"]) <= 5
    assert result["finish_reason"] in ("stop", "length")
    assert result["stats"]["prompt_tokens"] == len(result["prompt_ids"])


def test_generate_streams_the_same_text_as_json(run_dir, parrot):
    flags = ("--temperature", "1", "--seed", "5", "--max-new-tokens", "8")
    _, streamed, _ = parrot("generate", run_dir, "--prompt", "hello", *flags)
    _, as_json, _ = parrot("generate", run_dir, "--prompt", "hello", "--json", *flags)
    assert streamed == json.loads(as_json)["text"] + "\n"


@pytest.mark.parametrize(
    "flags, message",
    [
        (("--temperature", "-1"), "temperature must be"),
        (("--top-p", "0"), "top_p must be in"),
        (("--top-p", "1.5"), "top_p must be in"),
        (("--top-k", "-3"), "top_k must be"),
        (("--prompt", "xyz " * 100), "tokens but the context holds 192"),
    ],
)
def test_generate_bad_input_is_one_sentence_and_exit_2(run_dir, parrot, flags, message):
    code, _, err = parrot("generate", run_dir, "--prompt", "hi", *flags)
    assert code == 2 and message in err and "Traceback" not in err


def test_generate_truncate_fits_a_long_prompt(run_dir, parrot):
    code, out, _ = parrot("generate", run_dir, "--prompt", "xyz " * 100, "--truncate",
                          "--json", "--max-new-tokens", "4", "--temperature", "0")
    assert code == 0 and len(json.loads(out)["prompt_ids"]) == 188


def test_generate_on_a_missing_run_dir_is_exit_2(tmp_path, parrot):
    code, _, err = parrot("generate", tmp_path / "nope", "--prompt", "hi")
    assert code == 2 and "No model" in err


def test_chat_unknown_template_is_exit_2(run_dir, parrot):
    code, _, err = parrot("chat", run_dir, "--template", "nope", stdin="hi\n")
    assert code == 2 and "Unknown chat template 'nope'" in err and "Traceback" not in err


def test_chat_answers_each_line_and_runs_commands(run_dir, parrot, tmp_path):
    saved = tmp_path / "chat.json"
    script = f"hello\n/stats\nworld\n/system Be nice.\n/save {saved}\n/reset\nhi\n"
    code, out, err = parrot("chat", run_dir, "--template", "chatml", "--system", "S",
                            "--max-new-tokens", "3", "--temperature", "0", stdin=script)
    assert code == 0
    assert out.count("\n") >= 3  # each answer ends its line (random weights may add more)
    assert "generated" in err and "(conversation cleared)" in err
    messages = json.loads(saved.read_text())["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant"]
    assert messages[0]["content"] == "Be nice."


def test_chat_drops_old_turns_when_the_context_fills(run_dir, parrot):
    script = "".join(f"tell me about item {i}. " * 3 + "\n" for i in range(6))
    code, out, err = parrot("chat", run_dir, "--template", "plain", "--max-new-tokens", "2",
                            "--temperature", "0", stdin=script)
    assert code == 0 and "oldest messages to fit the context" in err
    assert out.count("\n") >= 6
