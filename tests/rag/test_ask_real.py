"""On the real SmolLM2 and MiniLM: `parrot rag ask` answers with sources, `parrot chat --rag`
grounds each turn, and the Python API gives what the CLI prints (slow)."""

import json
import os
import subprocess
import sys

import pytest
from encoder_helpers import minilm_dir
from shared_paths import models_home

DOC = ("# Log rotation\n\nThe logs are rotated by logrotate every night at 03:00. Seven days "
       "of logs are kept in /var/log/archive.\n\n# Backups\n\nBackups run at midnight.")


def _cli(*argv, stdin=None):
    env = {**os.environ, "PARROT_HOME": str(models_home()), "OMP_NUM_THREADS": "2"}
    return subprocess.run([sys.executable, "-m", "parrot", *argv], input=stdin, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from parrot.errors import ParrotError
    from parrot.hub.pull import pull

    minilm_dir()
    try:
        pull("smollm2-135m-instruct", models_home())
    except ParrotError as err:
        pytest.skip(f"SmolLM2 unavailable: {err.message}")
    root = tmp_path_factory.mktemp("ask")
    (root / "docs").mkdir()
    (root / "docs" / "ops.md").write_text(DOC)
    out = _cli("rag", "index", str(root / "docs"), "--store", str(root / "s.db"))
    assert out.returncode == 0, out.stderr
    return root / "s.db"


@pytest.mark.slow
def test_ask_prints_an_answer_and_its_sources_equal_to_the_api(store):
    import parrot
    from parrot.api import home  # noqa: F401 (PARROT_HOME set below)
    from parrot.rag import ask

    question = "How long are the logs kept?"
    out = _cli("rag", "ask", str(store), question, "--max-new-tokens", "40", "--json")
    assert out.returncode == 0, out.stderr
    printed = json.loads(out.stdout)
    assert printed["passages"][0]["path"].endswith("ops.md")
    os.environ["PARROT_HOME"] = str(models_home())
    llm = parrot.load("smollm2-135m-instruct", max_batch=1)
    from parrot.infer import SamplingParams

    answer = ask(store, question, llm, home=models_home(),
                 params=SamplingParams(temperature=0.0, max_new_tokens=40))
    assert answer.text == printed["answer"] and answer.cited == printed["cited"]
    text = _cli("rag", "ask", str(store), question, "--max-new-tokens", "40")
    assert text.returncode == 0 and "Sources:" in text.stdout and "ops.md" in text.stdout


@pytest.mark.slow
def test_chat_rag_grounds_every_turn_and_prints_sources(store):
    out = _cli("chat", "--rag", str(store), "--temperature", "0", "--max-new-tokens", "30",
               stdin="When are the logs rotated?\nWhen do backups run?\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("Sources:") == 2 and "ops.md" in out.stdout
