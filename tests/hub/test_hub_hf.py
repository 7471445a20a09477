"""Hugging Face folders both ways, checked against `transformers` on tiny random models."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from parrot.errors import ParrotError  # noqa: E402
from parrot.hub.hf import export_hf, load_hf  # noqa: E402
from parrot.tokenizer import Tokenizer  # noqa: E402

VOCAB = 300


@pytest.fixture(scope="module")
def tokenizer():
    texts = ["the quick brown fox jumps over the lazy dog " * 20, "hello world 12345"]
    return Tokenizer.train(texts, VOCAB, special_tokens=["<|endoftext|>"])


def hf_configs():
    llama = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        rope_theta=50000.0, rms_norm_eps=1e-5, tie_word_embeddings=False)
    llama_tied = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=128,
        tie_word_embeddings=True)
    gpt2 = transformers.GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=64, n_layer=2,
                                   n_head=4, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    qwen2 = transformers.Qwen2Config(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True)
    return {"llama": llama, "llama-tied-mqa": llama_tied, "gpt2": gpt2, "qwen2": qwen2}


def random_hf_model(config):
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():  # move norms off 1 and biases off 0 so misplacements show
        for name, p in model.named_parameters():
            if "norm" in name or "ln_" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    return model


def tokens():
    return torch.randint(0, VOCAB, (2, 16), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("family", list(hf_configs()))
def test_hf_model_loads_with_equal_logits(family, tokenizer, tmp_path):
    reference = random_hf_model(hf_configs()[family])
    reference.save_pretrained(tmp_path)
    tokenizer.save(tmp_path)
    model, loaded_tokenizer, info = load_hf(tmp_path)
    with torch.no_grad():
        expected = reference(tokens()).logits
        torch.testing.assert_close(model(tokens()), expected, rtol=1e-4, atol=1e-4)
    assert info.architecture == reference.config.model_type
    assert loaded_tokenizer.encode("hello world") == tokenizer.encode("hello world")


@pytest.mark.parametrize("family", list(hf_configs()))
def test_exported_model_opens_in_transformers_with_equal_logits(family, tokenizer, tmp_path):
    reference = random_hf_model(hf_configs()[family])
    reference.save_pretrained(tmp_path / "src")
    tokenizer.save(tmp_path / "src")
    model, tok, info = load_hf(tmp_path / "src")
    export_hf(model, tok, tmp_path / "out", meta=info)
    reopened = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        torch.testing.assert_close(reopened(tokens()).logits, model(tokens()),
                                   rtol=1e-4, atol=1e-4)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "out" / "tokenizer.json"))
    assert fast.encode("hello world 12345") == tok.encode("hello world 12345")


def test_unknown_family_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "mamba"}')
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ParrotError, match="'mamba' model"):
        load_hf(tmp_path)


def test_show_describes_a_hugging_face_folder_without_loading_weights(tokenizer, tmp_path):
    from parrot.hub.summary import describe

    reference = random_hf_model(hf_configs()["qwen2"])
    reference.save_pretrained(tmp_path)
    tokenizer.save(tmp_path)
    summary = describe(tmp_path)
    assert summary["format"] == "hf" and summary["architecture"] == "qwen2"
    # Tied embeddings are stored once, as transformers counts them.
    assert summary["parameters"] == sum(p.numel() for p in reference.parameters())
    assert summary["special_tokens"] == {"<|endoftext|>": tokenizer.special_tokens["<|endoftext|>"]}
    assert summary["config"]["hidden_size"] == 64
