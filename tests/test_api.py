"""The public Python API (`parrot.load`, `LLM`, `parrot.training`): each method, and the same
output as the CLI command built on it."""

import io
import json

import pytest
import torch

import parrot
from parrot import cli
from parrot.errors import ParrotError
from parrot.model import ModelConfig, Transformer
from parrot.rundir import save_weights, write_config
from parrot.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def llm(run_dir):
    return parrot.load(run_dir, quantize="none", max_batch=4)


def _cli(capsys, *argv, stdin=None):
    if stdin is not None:
        import sys

        old, sys.stdin = sys.stdin, io.StringIO(stdin)
    try:
        code = cli.main([str(a) for a in argv])
    finally:
        if stdin is not None:
            sys.stdin = old
    out, err = capsys.readouterr()
    return code, out, err


def test_importing_parrot_does_not_import_the_api():
    import subprocess
    import sys

    code = "import sys, parrot; print('parrot.api' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["False", "False"]


def test_load_gives_true_parameter_count_and_an_engine(llm, run_dir):
    reference = Transformer(ModelConfig.from_dict(json.loads(
        (run_dir / "config.json").read_text())["model"]))
    assert llm.num_parameters == reference.num_parameters()
    assert llm.engine.max_batch == 4 and llm.config.d_model == 32


def test_generate_equals_the_cli_json(llm, run_dir, capsys):
    completion = llm.generate("hello", max_new_tokens=6, temperature=0)
    code, out, _ = _cli(capsys, "generate", run_dir, "--prompt", "hello", "--json",
                        "--temperature", "0", "--max-new-tokens", "6", "--quantize", "none")
    assert code == 0
    assert json.loads(out)["token_ids"] == completion.token_ids
    assert json.loads(out)["text"] == completion.text


def test_stream_yields_the_text_of_generate(llm):
    stream = llm.stream("hello", max_new_tokens=6, temperature=1.0, seed=3)
    pieces = list(stream)
    assert "".join(pieces) == stream.completion.text
    assert stream.completion.text == llm.generate("hello", max_new_tokens=6, temperature=1.0,
                                                  seed=3).text


def test_generate_batch_equals_one_at_a_time_with_a_seed(llm):
    prompts = ["hello", "world", "hello world"]
    batch = llm.generate_batch(prompts, max_new_tokens=5, temperature=0.8, seed=1)
    alone = [llm.generate(p, max_new_tokens=5, temperature=0.8, seed=1) for p in prompts]
    assert [c.token_ids for c in batch] == [c.token_ids for c in alone]


def test_chat_renders_the_template_and_equals_the_cli(llm, run_dir, capsys):
    messages = [{"role": "user", "content": "hello"}]
    prompt = llm.chat_prompt(messages)
    assert prompt.endswith("Assistant:") or "hello" in prompt  # the plain template
    reply = llm.chat(messages, max_new_tokens=6, temperature=0)
    code, out, _ = _cli(capsys, "chat", run_dir, "--temperature", "0", "--max-new-tokens", "6",
                        "--quantize", "none", stdin="hello\n")
    assert code == 0 and out.strip() == reply.text.strip()


def test_unknown_sampling_option_is_one_sentence(llm):
    with pytest.raises(ParrotError, match="Unknown sampling option 'temprature'"):
        llm.generate("hello", temprature=0)


def test_bad_load_arguments_are_parrot_errors(run_dir, tmp_path):
    with pytest.raises(ParrotError, match="quantize must be one of"):
        parrot.load(run_dir, quantize="int3")
    with pytest.raises(ParrotError, match="not a file, folder or pulled model name"):
        parrot.load(tmp_path / "missing")


def test_encode_decode_round_trip(llm):
    ids = llm.encode("hello world")
    assert llm.decode(ids) == "hello world"


def test_load_tokenizer_takes_a_model_or_a_tokenizer_file(run_dir):
    assert parrot.load_tokenizer(run_dir).vocab_size == 262
    assert parrot.load_tokenizer(run_dir / "tokenizer.json").vocab_size == 262


def test_tokenize_takes_a_model(run_dir, capsys):
    code, out, _ = _cli(capsys, "tokenize", run_dir, "hello")
    assert code == 0 and "hello" in out


def test_an_encoder_embeds_and_refuses_to_generate(tmp_path):
    from parrot.model.presets import get_preset

    tok = Tokenizer.train(["a cat sat on a mat " * 10], vocab_size=270,
                          special_tokens=["[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]"])
    cfg = get_preset("bert-tiny", vocab_size=tok.vocab_size)
    write_config(tmp_path, {"model": cfg.to_dict()})
    save_weights(tmp_path, Transformer(cfg))
    tok.save(tmp_path)
    encoder = parrot.load(tmp_path)
    vectors = encoder.embed(["a cat", "a mat", "sat"])
    assert vectors.shape == (3, cfg.d_model)
    assert torch.allclose(vectors.norm(dim=-1), torch.ones(3), atol=1e-5)
    with pytest.raises(ParrotError, match="encoder-only"):
        encoder.generate("a cat")


def test_train_maps_keyword_settings_onto_the_run_config(tmp_path):
    out = tmp_path / "tiny"
    result = parrot.train(preset="tiny", out=out, steps=2, eval_every=2, log_every=1,
                          d_model=32, n_layers=1, n_heads=2, batch_size=2, context_length=32,
                          overrides=["data.vocab_size=300"], data=[_corpus(tmp_path)],
                          show_progress=False)
    config = json.loads((out / "config.json").read_text())
    assert result.steps == 2 and config["train"]["steps"] == 2
    assert config["model"]["d_model"] == 32
    assert parrot.load(out).generate("the", max_new_tokens=3, temperature=0).token_ids


def _corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 400)
    return path


def test_finetune_splits_method_and_training_settings(run_dir, tmp_path):
    data = tmp_path / "chats.jsonl"
    rows = [{"messages": [{"role": "user", "content": "hello"},
                          {"role": "assistant", "content": f"world {i}"}]} for i in range(8)]
    data.write_text("\n".join(json.dumps(r) for r in rows))
    result = parrot.finetune(run_dir, data, tmp_path / "lora", method="lora", rank=2,
                             steps=2, batch_size=2, eval_every=2, show_progress=False)
    config = json.loads((tmp_path / "lora" / "config.json").read_text())
    assert result.steps == 2 and config["train"]["steps"] == 2
    assert config["finetune"]["rank"] == 2
    assert parrot.load(tmp_path / "lora").generate("hello", max_new_tokens=2).token_ids
