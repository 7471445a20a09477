"""Mixtral and Qwen2-MoE folders both ways, against `transformers` on tiny random models."""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from parrot.errors import ParrotError  # noqa: E402
from parrot.hub.hf import export_hf, load_hf  # noqa: E402
from parrot.hub.hf_moe import (  # noqa: E402
    HF_MIXTRAL,
    HF_QWEN2_MOE,
    mixtral_from_hf,
    mixtral_to_hf,
    qwen2_moe_from_hf,
    qwen2_moe_to_hf,
)
from parrot.hub.naming import invert, rename  # noqa: E402
from parrot.model import ModelConfig, Transformer  # noqa: E402
from parrot.model.moe import moe_layers  # noqa: E402
from parrot.tokenizer import Tokenizer  # noqa: E402

VOCAB = 300


@pytest.fixture(scope="module")
def tokenizer():
    texts = ["the quick brown fox jumps over the lazy dog " * 20, "hello world 12345"]
    return Tokenizer.train(texts, VOCAB, special_tokens=["<|endoftext|>"])


def hf_configs():
    mixtral = transformers.MixtralConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=80, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        num_local_experts=4, num_experts_per_tok=2, rope_theta=50000.0, rms_norm_eps=1e-5,
        tie_word_embeddings=False)
    qwen2_moe = transformers.Qwen2MoeConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, moe_intermediate_size=48,
        shared_expert_intermediate_size=72, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, num_experts=6,
        num_experts_per_tok=2, norm_topk_prob=False, decoder_sparse_step=1, qkv_bias=True,
        rms_norm_eps=1e-6, tie_word_embeddings=False)
    return {"mixtral": mixtral, "qwen2_moe": qwen2_moe}


def random_hf_model(config):
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):  # off 1 and 0, so misplacements show
                p.add_(torch.randn_like(p) * 0.1)
            elif name.endswith(("mlp.gate.weight", "shared_expert_gate.weight")):
                p.normal_(0, 1.0)  # decisive routing: no near-ties between experts
    return model


def tokens():
    return torch.randint(0, VOCAB, (2, 16), generator=torch.Generator().manual_seed(1))


def test_transformers_saves_per_expert_tensors_with_the_mapped_names(tmp_path):
    from safetensors import safe_open

    for family, config in hf_configs().items():
        random_hf_model(config).save_pretrained(tmp_path / family)
        table = HF_MIXTRAL if family == "mixtral" else HF_QWEN2_MOE
        with safe_open(str(tmp_path / family / "model.safetensors"), "pt") as f:
            names = list(f.keys())
        assert all(rename(n, table) is not None for n in names), family


@pytest.mark.parametrize("family", list(hf_configs()))
def test_hf_moe_model_loads_with_equal_logits(family, tokenizer, tmp_path):
    reference = random_hf_model(hf_configs()[family])
    reference.save_pretrained(tmp_path)
    tokenizer.save(tmp_path)
    model, _, info = load_hf(tmp_path)
    assert info.architecture == family and len(moe_layers(model)) == 2
    with torch.no_grad():
        expected = reference(tokens()).logits
        torch.testing.assert_close(model(tokens()), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("family", list(hf_configs()))
def test_exported_moe_model_opens_in_transformers_with_equal_logits(family, tokenizer,
                                                                    tmp_path):
    reference = random_hf_model(hf_configs()[family])
    reference.save_pretrained(tmp_path / "src")
    tokenizer.save(tmp_path / "src")
    model, tok, info = load_hf(tmp_path / "src")
    export_hf(model, tok, tmp_path / "out", meta=info)
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert saved["model_type"] == family
    reopened = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert type(reopened) is type(reference)
    with torch.no_grad():
        torch.testing.assert_close(reopened(tokens()).logits, model(tokens()),
                                   rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(reopened(tokens()).logits, reference(tokens()).logits,
                                   rtol=1e-4, atol=1e-4)


def test_parrot_built_moe_exports_and_reloads(tokenizer, tmp_path):
    torch.manual_seed(3)
    cfg = ModelConfig(vocab_size=VOCAB, context_length=64, d_model=32, n_layers=2, n_heads=4,
                      n_kv_heads=2, positions="rope", norm="rmsnorm", mlp="swiglu", bias=False,
                      n_experts=4, experts_per_token=2, expert_d_ff=40, tie_embeddings=True)
    model = Transformer(cfg).eval()
    export_hf(model, tokenizer, tmp_path)
    reopened = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    back, _, _ = load_hf(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(reopened(tokens()).logits, model(tokens()),
                                   rtol=1e-4, atol=1e-4)
    assert back.config == cfg.replace(d_ff=40, qkv_bias=False)


def test_configs_round_trip():
    for family, config in hf_configs().items():
        c = config.to_dict()
        from_hf, to_hf = ((mixtral_from_hf, mixtral_to_hf) if family == "mixtral"
                          else (qwen2_moe_from_hf, qwen2_moe_to_hf))
        cfg = from_hf(c)
        assert from_hf(to_hf(cfg)) == cfg
    qwen = qwen2_moe_from_hf(hf_configs()["qwen2_moe"].to_dict())
    assert (qwen.shared_experts, qwen.shared_d_ff, qwen.shared_expert_gate) == (1, 72, True)
    assert not qwen.moe_renormalize and qwen.has_qkv_bias and qwen.expert_d_ff == 48


def test_name_tables_invert_exactly():
    for table in (HF_MIXTRAL, HF_QWEN2_MOE):
        back = invert(table)
        for src, dst in table.items():
            name = src.replace("{i}", "3").replace("{e}", "11")
            canonical = rename(name, table)
            assert canonical == dst.replace("{i}", "3").replace("{e}", "11")
            assert rename(canonical, back) == name


def test_unsupported_moe_variants_are_clear_errors(tokenizer, tmp_path):
    c = hf_configs()["qwen2_moe"].to_dict()
    with pytest.raises(ParrotError, match="dense and sparse"):
        qwen2_moe_from_hf({**c, "decoder_sparse_step": 2})
    cfg = ModelConfig(vocab_size=VOCAB, n_experts=4, positions="learned")
    with pytest.raises(ParrotError, match="matches no Hugging Face family"):
        export_hf(Transformer(cfg), tokenizer, tmp_path / "a")
    cfg = ModelConfig(vocab_size=VOCAB, positions="rope", norm="rmsnorm", mlp="swiglu",
                      bias=False, n_experts=4, moe_balance="loss_free")
    model = Transformer(cfg)
    moe_layers(model)[0].balance_bias.fill_(0.5)
    with pytest.raises(ParrotError, match="selection bias"):
        export_hf(model, tokenizer, tmp_path / "b")


def test_aux_loss_matches_transformers_switch_loss_up_to_its_top_k_factor():
    """transformers counts f_i over tokens (sum_i f_i = k); parrot over the N*k assignments
    (sum_i f_i = 1), so for one layer HF's loss == k * parrot's with alpha = 1."""
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

    from parrot.model.moe import aux_balance_loss, top_k_route

    logits = torch.randn(50, 6, generator=torch.Generator().manual_seed(2)) * 2
    probs = torch.softmax(logits, -1)
    _, indices = top_k_route(probs, None, 3, renormalize=True)
    ours = aux_balance_loss(probs, indices, coef=1.0)
    theirs = load_balancing_loss_func((logits,), num_experts=6, top_k=3)
    torch.testing.assert_close(3 * ours, theirs)
