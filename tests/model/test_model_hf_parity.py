"""Parity with Hugging Face `transformers` on small random models built locally.

The weight-name maps live here until hub/ owns them (#6). Our RoPE uses the half-split
layout of HF Llama, so q/k weights copy across without permutation.
"""

from __future__ import annotations

import pytest
import torch

from parrot.model import KVCache, ModelConfig, Transformer

transformers = pytest.importorskip("transformers")


def llama_pair(tie: bool = False):
    torch.manual_seed(0)
    hf_cfg = transformers.LlamaConfig(
        vocab_size=120, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        rms_norm_eps=1e-6, rope_theta=5000.0, tie_word_embeddings=tie, attention_bias=False,
        mlp_bias=False,
    )
    hf_cfg._attn_implementation = "eager"
    hf = transformers.LlamaForCausalLM(hf_cfg).eval()
    with torch.no_grad():  # HF initialises norms to 1; perturb them so norms are checked
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.add_(0.2 * torch.randn_like(p))
    ours = Transformer(ModelConfig(
        vocab_size=120, context_length=64, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2,
        d_ff=96, positions="rope", rope_theta=5000.0, norm="rmsnorm", norm_eps=1e-6,
        mlp="swiglu", bias=False, tie_embeddings=tie,
    )).eval()
    state = {}
    for name, tensor in hf.state_dict().items():
        state[llama_name(name)] = tensor
    if tie:
        state.pop("lm_head.weight", None)
    missing, unexpected = ours.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    return hf, ours


def llama_name(name: str) -> str:
    """HF Llama parameter name -> parrot name."""
    fixed = {"model.embed_tokens.weight": "tok_emb.weight",
             "model.norm.weight": "final_norm.weight", "lm_head.weight": "lm_head.weight"}
    if name in fixed:
        return fixed[name]
    _, _, i, rest = name.split(".", 3)
    rest = (rest.replace("self_attn.", "attn.").replace("input_layernorm", "norm1")
            .replace("post_attention_layernorm", "norm2"))
    return f"blocks.{i}.{rest}"


@pytest.mark.parametrize("tie", [False, True])
def test_llama_style_config_matches_llama_for_causal_lm(tie):
    hf, ours = llama_pair(tie)
    tokens = torch.randint(0, 120, (2, 20), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = hf(tokens).logits
        torch.testing.assert_close(ours(tokens), expected, atol=1e-4, rtol=1e-4)


def test_llama_cached_decode_matches_hf_logits():
    hf, ours = llama_pair()
    tokens = torch.randint(0, 120, (1, 12), generator=torch.Generator().manual_seed(4))
    cache = KVCache(ours.config, 1, 16)
    with torch.no_grad():
        expected = hf(tokens).logits
        ours(tokens[:, :8], cache=cache)
        for t in range(8, 12):
            step = ours(tokens[:, t:t + 1], positions=torch.tensor([[t]]), cache=cache)
            torch.testing.assert_close(step[0, 0], expected[0, t], atol=1e-4, rtol=1e-4)


def gpt2_state(hf) -> dict[str, torch.Tensor]:
    """GPT-2 weights in parrot names: Conv1D stores (in, out), so transpose; split c_attn."""
    state = {"tok_emb.weight": hf.transformer.wte.weight,
             "pos_emb.weight": hf.transformer.wpe.weight,
             "final_norm.weight": hf.transformer.ln_f.weight,
             "final_norm.bias": hf.transformer.ln_f.bias}
    for i, h in enumerate(hf.transformer.h):
        p = f"blocks.{i}."
        q, k, v = h.attn.c_attn.weight.T.chunk(3, dim=0)
        qb, kb, vb = h.attn.c_attn.bias.chunk(3)
        pairs = {
            "attn.q_proj": (q, qb), "attn.k_proj": (k, kb), "attn.v_proj": (v, vb),
            "attn.o_proj": (h.attn.c_proj.weight.T, h.attn.c_proj.bias),
            "mlp.up_proj": (h.mlp.c_fc.weight.T, h.mlp.c_fc.bias),
            "mlp.down_proj": (h.mlp.c_proj.weight.T, h.mlp.c_proj.bias),
            "norm1": (h.ln_1.weight, h.ln_1.bias), "norm2": (h.ln_2.weight, h.ln_2.bias),
        }
        for name, (w, b) in pairs.items():
            state[p + name + ".weight"], state[p + name + ".bias"] = w, b
    return state


def test_gpt2_style_config_matches_gpt2_lm_head_model():
    torch.manual_seed(0)
    hf_cfg = transformers.GPT2Config(
        vocab_size=120, n_positions=32, n_embd=64, n_layer=2, n_head=4,
        activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        layer_norm_epsilon=1e-5,
    )
    hf_cfg._attn_implementation = "eager"
    hf = transformers.GPT2LMHeadModel(hf_cfg).eval()
    ours = Transformer(ModelConfig(
        vocab_size=120, context_length=32, d_model=64, n_layers=2, n_heads=4,
        positions="learned", norm="layernorm", mlp="gelu_tanh", bias=True, tie_embeddings=True,
    )).eval()
    with torch.no_grad():
        missing, unexpected = ours.load_state_dict(gpt2_state(hf), strict=False)
        assert missing == ["lm_head.weight"] and not unexpected  # tied: shares tok_emb
        tokens = torch.randint(0, 120, (2, 32), generator=torch.Generator().manual_seed(5))
        torch.testing.assert_close(ours(tokens), hf(tokens).logits, atol=1e-4, rtol=1e-4)
