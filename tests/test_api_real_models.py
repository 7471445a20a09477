"""On the real SmolLM2 and MiniLM: the Python API gives what the CLI prints (generate, chat, embed)."""

import json
import os
import subprocess
import sys

import pytest
from shared_paths import models_home

PROMPT = "The three primary colours are"


@pytest.fixture(scope="module")
def smollm2():
    from parrot.errors import ParrotError
    from parrot.hub.pull import pull

    try:
        return pull("smollm2-135m-instruct", models_home())
    except ParrotError as err:
        pytest.skip(f"SmolLM2 unavailable: {err.message}")


def _cli(*argv, stdin=None):
    env = {**os.environ, "PARROT_HOME": str(models_home())}
    out = subprocess.run([sys.executable, "-m", "parrot", *argv], input=stdin, env=env,
                         capture_output=True, text=True, check=True)
    return out.stdout


@pytest.mark.slow
def test_generate_and_chat_equal_the_cli(smollm2):
    import parrot

    llm = parrot.load(smollm2, max_batch=1)
    completion = llm.generate(PROMPT, max_new_tokens=16, temperature=0)
    printed = json.loads(_cli("generate", str(smollm2), "--prompt", PROMPT, "--json",
                              "--temperature", "0", "--max-new-tokens", "16"))
    assert printed["token_ids"] == completion.token_ids and printed["text"] == completion.text
    reply = llm.chat([{"role": "user", "content": "Name one colour."}], max_new_tokens=16,
                     temperature=0)
    chatted = _cli("chat", str(smollm2), "--temperature", "0", "--max-new-tokens", "16",
                   stdin="Name one colour.\n")
    assert chatted.strip() == reply.text.strip()


@pytest.mark.slow
def test_embed_equals_the_cli_on_minilm():
    import parrot
    from parrot.errors import ParrotError
    from parrot.hub.pull import pull

    try:
        path = pull("minilm-l6", models_home())
    except ParrotError as err:
        pytest.skip(f"MiniLM unavailable: {err.message}")
    texts = ["A cat sat on the mat.", "A feline rested on a rug."]
    vectors = parrot.load(path).embed(texts)
    printed = json.loads(_cli("embed", str(path), *texts, "--json"))
    assert printed["dimensions"] == 384
    assert printed["embeddings"] == vectors.tolist()
