"""Projection fusion: stacked q/k/v and gate/up layers compute what the separate ones did,
and layers that cannot be stacked (LoRA-wrapped, no gate) are left alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from parrot.adapt.fusion import (
    FusedAttention,
    FusedMLP,
    can_stack,
    fuse_projections,
    stack_linears,
)
from parrot.adapt.lora import LoraLinear, apply_lora
from parrot.model import KVCache, Transformer, get_preset
from parrot.model.attention import Attention
from parrot.model.mlp import MLP

LLAMA = get_preset("llama-tiny", vocab_size=256)
CONFIGS = {
    "llama-tiny": LLAMA,
    "qkv-bias": LLAMA.replace(qkv_bias=True),  # Qwen2 style: biases on q, k, v only
    "gpt-tiny": get_preset("gpt-tiny"),          # biases everywhere, ungated GELU MLP
}


pytestmark = pytest.mark.usefixtures("one_thread")


def build(cfg) -> Transformer:
    torch.manual_seed(0)
    model = Transformer(cfg).eval()
    with torch.no_grad():  # non-zero biases, so a dropped or misplaced bias shows
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)
    return model


def tokens(cfg, length: int = 12) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, cfg.vocab_size, (2, length), generator=generator)


def test_stack_linears_concatenates_outputs():
    torch.manual_seed(0)
    parts = [nn.Linear(16, n) for n in (8, 4, 4)]
    fused = stack_linears(parts)
    x = torch.randn(3, 16)
    want = torch.cat([p(x) for p in parts], dim=-1)
    torch.testing.assert_close(fused(x), want, rtol=0, atol=1e-6)
    assert not fused.weight.requires_grad and fused.weight.shape == (16, 16)
    # copies, not views: changing a source afterwards leaves the fused layer as it was
    with torch.no_grad():
        parts[0].weight.add_(1.0)
    torch.testing.assert_close(fused(x), want, rtol=0, atol=1e-6)


def test_can_stack_needs_plain_linears_of_one_width_and_bias_convention():
    a, b = nn.Linear(8, 4), nn.Linear(8, 6)
    assert can_stack([a, b])
    assert not can_stack([a, nn.Linear(8, 4, bias=False)])
    assert not can_stack([a, nn.Linear(9, 4)])
    assert not can_stack([a, None])
    assert not can_stack([a, LoraLinear(nn.Linear(8, 4), 2, 4.0, 0.0)])


@pytest.mark.parametrize("name", list(CONFIGS))
@torch.no_grad()
def test_fused_model_gives_the_same_logits(name):
    cfg = CONFIGS[name]
    model = build(cfg)
    x = tokens(cfg)
    before = model(x)
    keys = list(model.state_dict())
    fuse_projections(model)
    after = model(x)
    torch.testing.assert_close(after, before, rtol=1e-6, atol=1e-6)
    for block in model.blocks:
        attn, mlp = block.attn, block.mlp
        assert isinstance(attn, FusedAttention) and not hasattr(attn, "q_proj")
        width = (cfg.n_heads + 2 * cfg.kv_heads) * cfg.head_size
        assert attn.qkv_proj.weight.shape == (width, cfg.d_model)
        assert (attn.qkv_proj.bias is not None) == cfg.has_qkv_bias
        if cfg.gated:
            assert isinstance(mlp, FusedMLP)
            assert mlp.gate_up_proj.weight.shape == (2 * cfg.ff_size, cfg.d_model)
        else:  # nothing to stack: the MLP is untouched
            assert type(mlp) is MLP and type(mlp.up_proj) is nn.Linear
    # Fusing twice changes nothing: the same stacked modules, the same logits.
    stacked = [m.qkv_proj for m in model.modules() if isinstance(m, Attention)]
    assert fuse_projections(model) == []
    assert stacked == [m.qkv_proj for m in model.modules() if isinstance(m, Attention)]
    torch.testing.assert_close(model(x), before, rtol=1e-6, atol=1e-6)
    assert sorted(model.state_dict()) == sorted(keys)


@torch.no_grad()
def test_fused_model_saves_the_original_tensors_under_the_original_names():
    model = build(LLAMA)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    fuse_projections(model)
    fused = model.state_dict()
    assert fused.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(fused[key], value), key
    fresh = Transformer(LLAMA)
    fresh.load_state_dict(fused)  # a prepared model's weights load into a plain one


@torch.no_grad()
def test_fused_model_decodes_with_a_cache_like_the_unfused_one():
    plain, fused = build(LLAMA), build(LLAMA)
    fuse_projections(fused)
    seq = [3, 1, 4, 1, 5, 9, 2, 6]
    caches = [KVCache(LLAMA, 1, 16) for _ in range(2)]
    for model, cache in zip((plain, fused), caches, strict=True):
        model(torch.tensor([seq[:4]]), cache=cache)
    for t in range(4, len(seq)):
        step = [m(torch.tensor([[seq[t]]]), positions=torch.tensor([[t]]), cache=c)
                for m, c in zip((plain, fused), caches, strict=True)]
        torch.testing.assert_close(step[1], step[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(caches[1].keys, caches[0].keys, rtol=1e-5, atol=1e-5)


def test_lora_wrapped_model_is_not_fused_and_still_works():
    model = build(LLAMA)
    apply_lora(model, "all", rank=4, alpha=8)
    with torch.no_grad():  # a non-zero adapter, so its contribution is visible
        for module in model.modules():
            if isinstance(module, LoraLinear):
                for p in module.parameters():
                    if p.requires_grad:
                        p.normal_(0, 0.02)
    x = tokens(LLAMA)
    with torch.no_grad():
        before = model(x)
    assert fuse_projections(model) == []
    for attn in (m for m in model.modules() if isinstance(m, Attention)):
        assert type(attn) is Attention and isinstance(attn.q_proj, LoraLinear)
        assert not can_stack([attn.q_proj, attn.k_proj, attn.v_proj])
    for mlp in (m for m in model.modules() if isinstance(m, MLP)):
        assert type(mlp) is MLP and isinstance(mlp.gate_proj, LoraLinear)
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, rtol=0, atol=0)
    # and it still trains: the adapter gets gradients through the unfused layers
    loss = model(x).logsumexp(-1).mean()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)

