"""The README's Python API section runs as written, on the real SmolLM2 and MiniLM."""

import os
import re
from pathlib import Path

import pytest
from shared_paths import models_home

README = Path(__file__).resolve().parents[1] / "README.md"


def api_block() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## The Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_readme_api_section_runs(tmp_path, monkeypatch, capsys):
    from parrot.errors import ParrotError
    from parrot.hub.pull import pull

    try:
        for name in ("smollm2-135m-instruct", "minilm-l6"):
            pull(name, models_home())
    except ParrotError as err:
        pytest.skip(f"models unavailable: {err.message}")
    monkeypatch.setenv("PARROT_HOME", str(models_home()))
    monkeypatch.chdir(tmp_path)
    exec(compile(api_block(), str(README), "exec"), {})  # noqa: S102 - the README's own code
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "134515008"
    assert "Paris" in out[1]
    assert (tmp_path / "runs" / "api-tiny" / "model.safetensors").is_file()
    assert os.path.isfile(tmp_path / "runs" / "api-tiny" / "metrics.jsonl")
