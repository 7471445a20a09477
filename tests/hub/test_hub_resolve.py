"""`resolve_model` accepts every kind of MODEL argument; `parrot export` writes HF folders."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("gguf")

from gguf_helpers import tiny_llama, write_llama_gguf  # noqa: E402

from parrot.cli import main  # noqa: E402
from parrot.errors import ParrotError  # noqa: E402
from parrot.hub.hf import export_hf  # noqa: E402
from parrot.hub.pull import MANIFEST, models_dir  # noqa: E402
from parrot.hub.resolve import resolve_model  # noqa: E402
from parrot.rundir import save_weights, write_config  # noqa: E402
from parrot.tokenizer import Tokenizer  # noqa: E402

TOKENS = torch.arange(3, 40)[None]


@pytest.fixture(scope="module")
def source():
    return tiny_llama(seed=7)


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.train(["hello world, the cat sat on the mat " * 10], 264,
                           special_tokens=["<|endoftext|>"])


def run_dir(path, model, tokenizer):
    path.mkdir(parents=True, exist_ok=True)
    write_config(path, {"model": model.config.to_dict()})
    save_weights(path, model)
    tokenizer.save(path)
    return path


def logits(model):
    with torch.no_grad():
        return model(TOKENS)


def test_gguf_file_hf_folder_run_dir_and_pulled_name_all_resolve(source, tokenizer, tmp_path):
    gguf_path = write_llama_gguf(source, tmp_path / "m.gguf")
    run = run_dir(tmp_path / "run", source, tokenizer)
    hf = export_hf(source, tokenizer, tmp_path / "hf")
    stored = models_dir(tmp_path / "home") / "tiny"
    stored.mkdir(parents=True)
    (stored / "m.gguf").write_bytes(gguf_path.read_bytes())
    (stored / MANIFEST).write_text('{"name": "tiny", "file": "m.gguf", "format": "gguf"}')
    expected = logits(source)
    for spec, kind in ((gguf_path, "gguf"), (run, "run"), (hf, "hf"), ("tiny", "pulled")):
        model, tok, info = resolve_model(spec, home=tmp_path / "home")
        assert info.source == kind
        torch.testing.assert_close(logits(model), expected, rtol=1e-5, atol=1e-5)
        assert tok.vocab_size == 264


def test_unknown_and_unpulled_names_are_clear_errors(tmp_path):
    with pytest.raises(ParrotError, match="not a file, folder or pulled model name"):
        resolve_model("nope", home=tmp_path)
    with pytest.raises(ParrotError, match="parrot pull smollm2-135m-instruct"):
        resolve_model("smollm2-135m-instruct", home=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ParrotError, match="neither a parrot run directory"):
        resolve_model(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ParrotError, match="not a GGUF model"):
        resolve_model(tmp_path / "notes.txt")


def test_cli_export_run_dir_opens_in_transformers(source, tokenizer, tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    run = run_dir(tmp_path / "run", source, tokenizer)
    assert main(["export", str(run), "--format", "hf", "--out", str(tmp_path / "hf")]) == 0
    reopened = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        torch.testing.assert_close(reopened(TOKENS).logits, logits(source), rtol=1e-4, atol=1e-4)


def test_cli_export_of_a_missing_model_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PARROT_HOME", str(tmp_path))
    assert main(["export", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "No model" in err and "Traceback" not in err
