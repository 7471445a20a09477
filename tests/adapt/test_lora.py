"""LoRA: exact at init, merged == unmerged, gradients only in adapters, peft parity."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from parrot.adapt.lora import (
    apply_lora,
    load_adapter,
    load_lora,
    lora_layers,
    merge_lora,
    save_adapter,
    set_merged,
    trainable_parameters,
)
from parrot.errors import ParrotError
from parrot.model import ModelConfig, Transformer

CFG = ModelConfig(vocab_size=120, context_length=32, d_model=64, n_layers=2, n_heads=4,
                  n_kv_heads=2, d_ff=96, positions="rope", norm="rmsnorm", mlp="swiglu",
                  bias=False, tie_embeddings=False)


def model_and_tokens(seed: int = 0):
    torch.manual_seed(seed)
    return Transformer(CFG).eval(), torch.randint(0, 120, (2, 16))


def randomize_b(model, std: float = 0.05) -> None:
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.normal_(0, std)


def test_at_init_adapted_model_equals_base_exactly():
    model, tokens = model_and_tokens()
    base = model(tokens)
    apply_lora(model, "all", rank=4, alpha=8)
    assert torch.equal(model(tokens), base)


def test_merged_equals_unmerged():
    model, tokens = model_and_tokens()
    apply_lora(model, "q,k,v,o,up,down,gate", rank=4, alpha=8)
    randomize_b(model)
    unmerged = model(tokens)
    set_merged(model, True)
    torch.testing.assert_close(model(tokens), unmerged, atol=1e-5, rtol=0)
    set_merged(model, False)
    torch.testing.assert_close(model(tokens), unmerged, atol=1e-5, rtol=0)
    merge_lora(model)
    assert not lora_layers(model)
    torch.testing.assert_close(model(tokens), unmerged, atol=1e-5, rtol=0)


def test_only_adapter_parameters_get_gradients():
    model, tokens = model_and_tokens()
    apply_lora(model, "q,v", rank=2, alpha=4)
    randomize_b(model)
    model(tokens).sum().backward()
    for name, p in model.named_parameters():
        if "lora_" in name:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None and not p.requires_grad, name


def test_trainable_count_is_rank_times_in_plus_out():
    model, _ = model_and_tokens()
    apply_lora(model, "q,v", rank=4, alpha=8)
    # per layer: q (64 -> 64), v (64 -> 32 with 2 kv heads of 16)
    assert trainable_parameters(model) == 2 * (4 * (64 + 64) + 4 * (64 + 32))


def test_save_and_load_round_trip(tmp_path):
    model, tokens = model_and_tokens()
    apply_lora(model, "q,k,v,o", rank=3, alpha=6)
    randomize_b(model)
    expected = model(tokens)
    save_adapter(model, tmp_path, {"base": "somewhere"})
    fresh, _ = model_and_tokens()  # same seed: same base weights
    load_lora(fresh, tmp_path)
    torch.testing.assert_close(fresh(tokens), expected, atol=0, rtol=0)


def test_loading_a_directory_without_adapter_weights_is_an_error(tmp_path):
    model, _ = model_and_tokens()
    apply_lora(model, "q", rank=2, alpha=4)
    save_adapter(model, tmp_path)
    (tmp_path / "adapter.safetensors").unlink()
    with pytest.raises(ParrotError, match="holds no adapter"):
        load_adapter(model_and_tokens()[0], tmp_path)


@pytest.mark.parametrize("targets", ["nothing_here", "lm_head_x"])
def test_targets_matching_no_layer_is_an_error(targets):
    model, _ = model_and_tokens()
    with pytest.raises(ParrotError, match="match no Linear layer"):
        apply_lora(model, targets, rank=2, alpha=4)


@pytest.mark.parametrize("rank", [0, -1])
def test_non_positive_rank_is_an_error(rank):
    model, _ = model_and_tokens()
    with pytest.raises(ParrotError, match="rank must be a positive integer"):
        apply_lora(model, "q", rank=rank, alpha=4)


def llama_pair():
    """A transformers Llama and our model with the same (copied) weights."""
    import transformers

    torch.manual_seed(0)
    hf_cfg = transformers.LlamaConfig(
        vocab_size=120, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False)
    hf = transformers.LlamaForCausalLM(hf_cfg).eval()
    ours = Transformer(CFG).eval()
    fixed = {"model.embed_tokens.weight": "tok_emb.weight",
             "model.norm.weight": "final_norm.weight", "lm_head.weight": "lm_head.weight"}
    state = {}
    for name, tensor in hf.state_dict().items():
        if name not in fixed:
            _, _, i, rest = name.split(".", 3)
            rest = (rest.replace("self_attn.", "attn.").replace("input_layernorm", "norm1")
                    .replace("post_attention_layernorm", "norm2"))
        state[fixed.get(name) or f"blocks.{i}.{rest}"] = tensor
    ours.load_state_dict(state)
    return hf, ours


def test_matches_peft_count_and_loss():
    pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    hf, ours = llama_pair()
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj", "gate_proj"]
    apply_lora(ours, targets, rank=4, alpha=8)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=targets, lora_dropout=0.0)
    hf_lora = peft.get_peft_model(hf, config)
    trainable, _ = hf_lora.get_nb_trainable_parameters()
    assert trainable_parameters(ours) == trainable
    randomize_b(ours, 0.1)
    with torch.no_grad():  # copy our A and B into peft's layers
        for name, layer in lora_layers(ours).items():
            _, i, rest = name.split(".", 2)
            rest = rest.replace("attn.", "self_attn.")
            hf_mod = hf_lora.get_submodule(f"base_model.model.model.layers.{i}.{rest}")
            hf_mod.lora_A["default"].weight.copy_(layer.lora_A)
            hf_mod.lora_B["default"].weight.copy_(layer.lora_B)
    tokens = torch.randint(0, 120, (2, 24), generator=torch.Generator().manual_seed(1))
    ours_loss = F.cross_entropy(ours(tokens[:, :-1]).flatten(0, 1), tokens[:, 1:].flatten())
    hf_loss = hf_lora(input_ids=tokens, labels=tokens).loss
    assert abs(float(ours_loss.detach()) - float(hf_loss.detach())) < 1e-4
