"""`parrot analyze heads` and `parrot prune`: a pruned model loads everywhere a model loads
(generate, chat, serve, export to Hugging Face, which transformers reads)."""

import json
import time

import pytest
import torch

from parrot.cli import main
from parrot.model import ModelConfig, Transformer
from parrot.rundir import save_weights, write_config
from parrot.tokenizer import Tokenizer

TEXT = "the quick brown fox jumps over the lazy dog. " * 60


@pytest.fixture(scope="module")
def llama_run(tmp_path_factory):
    """A Llama-layout run (RoPE, RMSNorm, SwiGLU, 4 query heads in 2 KV groups)."""
    path = tmp_path_factory.mktemp("llama")
    tok = Tokenizer.train([TEXT], vocab_size=280, special_tokens=["<|endoftext|>"])
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=280, context_length=64, d_model=32, n_layers=2, n_heads=4,
                      n_kv_heads=2, positions="rope", norm="rmsnorm", mlp="swiglu", bias=False)
    write_config(path, {"model": cfg.to_dict()})
    save_weights(path, Transformer(cfg))
    tok.save(path)
    (path / "text.txt").write_text(TEXT)
    return path


@pytest.fixture(scope="module")
def pruned(llama_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("pruned") / "p"
    code = main(["prune", str(llama_run), "--heads", "0.5", "--unit", "group", "--out", str(out),
                 "--data", str(llama_run / "text.txt"), "--seq-len", "32", "--windows", "2"])
    assert code == 0
    return out


def test_prune_writes_a_smaller_run(pruned):
    config = json.loads((pruned / "config.json").read_text())
    assert (config["model"]["n_heads"], config["model"]["n_kv_heads"]) == (2, 1)
    assert config["model"]["head_dim"] == 8 and len(config["pruned"]["kept_heads"]) == 2


def test_the_pruned_model_generates_and_chats(pruned, capsys, monkeypatch):
    assert main(["generate", str(pruned), "--prompt", "the quick", "--max-new-tokens", "4",
                 "--temperature", "0", "--quantize", "none"]) == 0
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("hello\n/quit\n"))
    assert main(["chat", str(pruned), "--max-new-tokens", "3", "--temperature", "0",
                 "--quantize", "none", "--template", "plain"]) == 0


def test_the_pruned_model_serves(pruned):
    from fastapi.testclient import TestClient

    import parrot
    from parrot.chat import get_template
    from parrot.serve import Loaded, ServeSettings, create_app

    def load():
        llm = parrot.load(pruned, quantize="none", max_batch=2, log=None)
        return Loaded(llm.model, llm.tokenizer, get_template("plain"), engine=llm.engine)

    with TestClient(create_app(load, ServeSettings(model_name="p", api_key=None))) as client:
        deadline = time.monotonic() + 60
        while client.get("/health").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)  # the model loads in the background
        reply = client.post("/v1/completions", json={"model": "p", "prompt": "the",
                                                      "max_tokens": 3, "temperature": 0})
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["text"] is not None


@pytest.mark.slow  # importing transformers takes ~10 s on this machine
def test_the_pruned_model_exports_and_transformers_reads_it(pruned, tmp_path):
    transformers = pytest.importorskip("transformers")
    import parrot

    assert main(["export", str(pruned), "--out", str(tmp_path / "hf")]) == 0
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    ours, _, _ = parrot.load_model(pruned)
    tokens = torch.tensor([[1, 5, 9, 30, 2, 7]])
    with torch.no_grad():
        torch.testing.assert_close(theirs(tokens).logits, ours(tokens), atol=1e-5, rtol=1e-4)
    assert theirs.config.num_attention_heads == 2 and theirs.config.num_key_value_heads == 1


def test_analyze_heads_writes_json_and_a_heatmap(llama_run, tmp_path, capsys):
    code = main(["analyze", "heads", str(llama_run), "--data", str(llama_run / "text.txt"),
                 "--seq-len", "32", "--windows", "2", "--out", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "heads.json").read_text())
    assert len(record["importance"]) == 2 and len(record["ablation"][0]) == 4
    assert (tmp_path / "heads.png").stat().st_size > 0


def _fails(capsys, argv, fragment):
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("parrot: error: ") and err.count("\n") == 1, err
    assert fragment in err


@pytest.mark.parametrize("fraction", ["0", "1", "1.5", "-0.1"])
def test_a_fraction_outside_zero_one_is_one_sentence(llama_run, tmp_path, capsys, fraction):
    _fails(capsys, ["prune", llama_run, "--heads", fraction, "--out", tmp_path / "x"],
           "strictly between 0 and 1")


def test_analyze_heads_on_a_model_without_attention_heads(tmp_path, capsys):
    from parrot.model.rnn import RNNConfig, build_rnn
    from parrot.rundir import save_rnn_run

    cfg = RNNConfig(vocab_size=20, d_embed=8, d_hidden=8, attention=False)
    tok = Tokenizer.train([TEXT], vocab_size=270, special_tokens=["<pad>", "<s>", "</s>"])
    save_rnn_run(tmp_path, build_rnn(cfg), tok, {"rnn": cfg.to_dict()})
    _fails(capsys, ["analyze", "heads", tmp_path], "no decoder attention heads")
