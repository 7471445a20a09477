"""The engine's speed paths keep its results: last-row prefill logits, quantized weights,
the compiled decode step, and the CLI's --quantize / --compile switches."""

import os

import pytest
import torch
from infer_helpers import assert_matches_recompute, prompts, tiny_model

from parrot.adapt.quantize import quantize
from parrot.infer import Engine, SamplingParams
from parrot.infer.strategies import last_logits
from parrot.model import KVCache

GREEDY = SamplingParams(temperature=0.0, max_new_tokens=6, ignore_eos=True)


def test_prefill_runs_the_head_on_the_last_position_only(byte_tok, monkeypatch):
    model = tiny_model(positions="rope")
    heads = []
    original = model.logits
    monkeypatch.setattr(model, "logits", lambda h: heads.append(h.shape) or original(h))
    engine = Engine(model, byte_tok, max_batch=1)
    completion = engine.generate(prompts([20])[0], GREEDY, record_logits=True)
    assert heads[0] == (1, model.config.d_model)  # prefill: one row, not 20
    assert_matches_recompute(model, completion)


def test_last_logits_equals_the_full_forward_and_falls_back_without_hidden(scripted):
    model = tiny_model(positions="rope")
    tokens = torch.tensor([prompts([9])[0]])
    positions = torch.arange(9)[None]
    cache = KVCache(model.config, 1, 16)
    with torch.no_grad():
        full = model(tokens)[:, -1]
        torch.testing.assert_close(last_logits(model, tokens, positions, cache), full)
        scripted_model = scripted(list(range(20)))  # forward only, no hidden/logits
        out = last_logits(scripted_model, tokens, positions, None)
    assert out.shape == (1, 262) and int(out.argmax()) == 9


@pytest.mark.parametrize("bits", [8, 4])
def test_quantized_cached_decode_equals_recompute(bits, byte_tok):
    """Short sequences, so the recompute takes the same weight-only kernel as decode."""
    model = quantize(tiny_model(positions="rope", n_kv_heads=2), bits)
    engine = Engine(model, byte_tok, max_batch=2)
    params = GREEDY.replace(max_new_tokens=5)
    for completion in engine.generate_batch(prompts([3, 9]), params, record_logits=True):
        seq = completion.prompt_ids + completion.token_ids
        with torch.no_grad():
            full = model(torch.tensor([seq]))[0]
        start = len(completion.prompt_ids) - 1
        expected = full[start: start + len(completion.token_ids)]
        # bfloat16 activations inside the kernel: rows computed in other batches round alike
        torch.testing.assert_close(completion.logits, expected, rtol=2e-2, atol=2e-2)
        assert completion.logits.argmax(-1).tolist() == expected.argmax(-1).tolist()


@pytest.mark.slow
def test_compiled_decode_step_equals_eager(byte_tok, monkeypatch):
    # Small buckets: the decode crosses cache lengths 16 -> 32 (one symbolic-length graph).
    monkeypatch.setattr("parrot.infer.engine._BUCKET", 16)
    model = tiny_model(positions="rope", n_kv_heads=2)
    eager = Engine(model, byte_tok, max_batch=2)
    compiled = Engine(model, byte_tok, max_batch=2, compile=True)
    params = GREEDY.replace(max_new_tokens=12)
    batch = prompts([4, 11])
    want = eager.generate_batch(batch, params, record_logits=True)
    got = compiled.generate_batch(batch, params, record_logits=True)
    for a, b in zip(want, got, strict=True):
        assert a.token_ids == b.token_ids
        torch.testing.assert_close(b.logits, a.logits, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from parrot.model import ModelConfig, Transformer
    from parrot.rundir import save_weights, write_config
    from parrot.tokenizer import Tokenizer

    path = tmp_path_factory.mktemp("run")
    Tokenizer.train(["hello world " * 20], vocab_size=262).save(path)
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=262, context_length=64, d_model=64, n_layers=2, n_heads=2)
    write_config(path, {"model": cfg.to_dict()})
    save_weights(path, Transformer(cfg))
    return path


@pytest.mark.parametrize("mode", ["none", "int8", "int4"])
def test_cli_quantize_flag_gives_the_python_api_result(mode, run_dir, capsys):
    import json

    from parrot import cli
    from parrot.adapt.prepare import prepare_for_inference
    from parrot.kernels import settings_from
    from parrot.rundir import load_model

    code = cli.main(["generate", str(run_dir), "--prompt", "hello", "--temperature", "0",
                     "--max-new-tokens", "5", "--quantize", mode, "--json"])
    assert code == 0
    got = json.loads(capsys.readouterr().out)["token_ids"]
    model, tokenizer, _ = load_model(run_dir)
    engine = Engine(prepare_for_inference(model, mode, **settings_from(os.environ)), tokenizer)
    want = engine.generate("hello", GREEDY.replace(max_new_tokens=5)).token_ids
    assert got == want[: len(got)] and got


def test_cli_rejects_an_unknown_quantization(run_dir, capsys):
    from parrot import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["generate", str(run_dir), "--prompt", "hi", "--quantize", "int3"])
    assert exit_info.value.code == 2 and "invalid choice" in capsys.readouterr().err
