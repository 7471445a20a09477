"""QLoRA: LoRA over frozen int8 Linear layers; gradients equal a float model of the same weights."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from parrot.adapt.lora import apply_lora, lora_layers, merge_lora, trainable_parameters
from parrot.adapt.qlora import quantize_linears, weight_bytes
from parrot.adapt.quantize import Int8Linear, quantize, quantize_rows_int8
from parrot.model import ModelConfig, Transformer

CFG = ModelConfig(vocab_size=96, context_length=32, d_model=48, n_layers=2, n_heads=4,
                  n_kv_heads=2, positions="rope", norm="rmsnorm", mlp="swiglu", bias=False)


def test_row_quantization_error_is_at_most_half_a_step():
    torch.manual_seed(0)
    w = torch.randn(70, 33) * torch.rand(70, 1)
    codes, scale = quantize_rows_int8(w)
    assert codes.dtype == torch.int8 and scale.shape == (70,)
    assert bool(((codes * scale[:, None] - w).abs() <= scale[:, None] / 2 + 1e-7).all())


def test_qlora_base_and_inference_quantization_give_identical_weights():
    torch.manual_seed(0)
    model = Transformer(CFG)
    frozen, inference = copy.deepcopy(model), copy.deepcopy(model)
    quantize_linears(frozen)
    quantize(inference, 8)
    for name, module in frozen.named_modules():
        if isinstance(module, Int8Linear):
            other = inference.get_submodule(name)
            assert type(other) is Int8Linear
            assert torch.equal(module.codes, other.codes)
            assert torch.equal(module.scale, other.scale)


def test_int8_linear_forward_and_input_gradient_match_float_reference():
    torch.manual_seed(0)
    linear = torch.nn.Linear(40, 2100, bias=True)  # > one backward chunk of rows
    layer = Int8Linear(linear)
    reference = torch.nn.Linear(40, 2100)
    with torch.no_grad():
        reference.weight.copy_(layer.dequantize())
        reference.bias.copy_(linear.bias)
    x = torch.randn(3, 5, 40, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    y, y_ref = layer(x), reference(x_ref)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(y)
    y.backward(grad)
    y_ref.backward(grad)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-5)


def lora_pair() -> tuple[Transformer, Transformer]:
    """(int8 base + LoRA, float base holding the dequantized weights + the same LoRA)."""
    torch.manual_seed(0)
    base = Transformer(CFG)
    q8 = copy.deepcopy(base)
    quantize_linears(q8)
    with torch.no_grad():
        for name, module in q8.named_modules():
            if isinstance(module, Int8Linear):
                base.get_submodule(name).weight.copy_(module.dequantize())
    apply_lora(q8, "all", rank=4, alpha=8)
    apply_lora(base, "all", rank=4, alpha=8)
    with torch.no_grad():
        for (_, a), (_, b) in zip(sorted(lora_layers(q8).items()),
                                  sorted(lora_layers(base).items()), strict=True):
            a.lora_B.normal_(0, 0.1)  # B != 0, so the gradient reaches every A as well
            b.lora_A.copy_(a.lora_A)
            b.lora_B.copy_(a.lora_B)
    return q8, base


def loss_of(model: Transformer, tokens: torch.Tensor) -> torch.Tensor:
    logits = model(tokens[:, :-1])
    return F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())


def test_lora_gradients_on_int8_base_match_float_reference():
    q8, ref = lora_pair()
    tokens = torch.randint(0, 96, (2, 17))
    loss, loss_ref = loss_of(q8, tokens), loss_of(ref, tokens)
    torch.testing.assert_close(loss, loss_ref, rtol=1e-5, atol=1e-6)
    loss.backward()
    loss_ref.backward()
    grads = {n: p.grad for n, p in q8.named_parameters() if p.requires_grad}
    grads_ref = {n: p.grad for n, p in ref.named_parameters() if p.requires_grad}
    assert grads.keys() == grads_ref.keys() and len(grads) == 2 * 7 * CFG.n_layers
    for name, grad in grads.items():
        scale = grads_ref[name].abs().max()
        torch.testing.assert_close(grad / scale, grads_ref[name] / scale, rtol=0, atol=1e-5)


def test_base_stays_int8_and_frozen_while_training():
    q8, _ = lora_pair()
    codes = {n: m.codes.clone() for n, m in q8.named_modules() if isinstance(m, Int8Linear)}
    assert trainable_parameters(q8) == sum(
        p.numel() for layer in lora_layers(q8).values() for p in (layer.lora_A, layer.lora_B))
    opt = torch.optim.AdamW([p for p in q8.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        loss_of(q8, torch.randint(0, 96, (2, 9))).backward()
        opt.step()
        opt.zero_grad()
    for name, module in q8.named_modules():
        if isinstance(module, Int8Linear):
            assert module.codes.dtype == torch.int8 and not module.codes.requires_grad
            assert module.codes.grad is None and torch.equal(module.codes, codes[name])


def test_int8_base_takes_about_a_quarter_of_the_linear_bytes():
    torch.manual_seed(0)
    model = Transformer(CFG.replace(tie_embeddings=True))
    before = weight_bytes(model)
    embedding = model.tok_emb.weight.numel() * 4
    quantize_linears(model)
    after = weight_bytes(model)
    assert after - embedding < 0.3 * (before - embedding)


def test_merge_folds_the_adapter_into_a_float_weight():
    q8, _ = lora_pair()
    tokens = torch.randint(0, 96, (2, 12))
    with torch.no_grad():
        adapted = q8(tokens)
        merged = merge_lora(q8)(tokens)
    assert not any(isinstance(m, Int8Linear) for m in q8.modules())
    torch.testing.assert_close(merged, adapted, atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", ["full", "soft-prompt"])
def test_int8_needs_lora(method):
    from parrot.errors import ParrotError
    from parrot.training.finetune import FinetuneConfig

    with pytest.raises(ParrotError, match="only --method lora"):
        FinetuneConfig(method=method, quantize="int8")
