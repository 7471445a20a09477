"""Weight-only int8/int4 Linear swaps: the quantizers invert, and models stay close."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from parrot.adapt.quantize import (
    Int4Linear,
    Int8Linear,
    quantize,
    quantize_groups_int4,
    quantize_rows_int8,
)
from parrot.errors import ParrotError
from parrot.model import Transformer, get_preset


def test_int8_rows_reconstruct_within_half_a_step():
    w = torch.randn(16, 64)
    q, s = quantize_rows_int8(w)
    assert q.dtype == torch.int8 and q.abs().max() == 127
    assert ((q.float() * s[:, None] - w).abs() <= s[:, None] / 2 + 1e-6).all()


def test_int4_groups_reconstruct_within_half_a_step_and_hit_the_extremes():
    w = torch.randn(8, 64)
    q, s, z = quantize_groups_int4(w)
    assert q.min() == 0 and q.max() == 15
    recon = ((q.float() - 8).reshape(8, 2, 32) * s[..., None] + z[..., None]).reshape(8, 64)
    assert ((recon - w).abs().reshape(8, 2, 32) <= s[..., None] / 2 + 1e-5).all()


def test_int4_of_a_16_level_grid_is_exact():
    """Weights already on a 4-bit grid per group (as a Q4_1 GGUF's are) survive int4."""
    d, m = torch.rand(4, 2, 1) + 0.1, torch.randn(4, 2, 1)
    codes = torch.randint(0, 16, (4, 2, 32)).float()
    codes[..., 0], codes[..., 1] = 0, 15
    w = (codes * d + m).reshape(4, 64)
    q, s, z = quantize_groups_int4(w)
    recon = ((q.float() - 8).reshape(4, 2, 32) * s[..., None] + z[..., None]).reshape(4, 64)
    torch.testing.assert_close(recon, w, rtol=0, atol=1e-5)


@pytest.mark.parametrize("cls, tol", [(Int8Linear, 0.03), (Int4Linear, 0.15)])
def test_quantized_linear_matches_float_linear(cls, tol):
    torch.manual_seed(0)
    linear = nn.Linear(64, 32, bias=True)
    x = torch.randn(3, 5, 64)
    out = cls(linear)(x)
    assert out.shape == (3, 5, 32) and out.dtype == torch.float32
    ref = linear(x)
    assert ((out - ref).abs().max() / ref.abs().max()) < tol


def test_int8_prefill_path_equals_dequantized_float_matmul():
    torch.manual_seed(0)
    linear = nn.Linear(64, 32)
    layer = Int8Linear(linear)
    x = torch.randn(40, 64)  # many rows: the float path
    weight = layer.dequantize()
    torch.testing.assert_close(layer(x), x @ weight.T + linear.bias, rtol=1e-5, atol=1e-5)
    one = layer(x[:1])  # one row
    torch.testing.assert_close(one, x[:1] @ weight.T + linear.bias, rtol=0.02, atol=0.02)


@pytest.mark.parametrize("bits", [8, 4])
def test_quantized_model_keeps_greedy_choices(bits):
    torch.manual_seed(0)
    model = Transformer(get_preset("llama-tiny", vocab_size=256)).eval()
    tokens = torch.randint(0, 256, (2, 24))
    with torch.no_grad():
        ref = model(tokens)
        quantize(model, bits)
        out = model(tokens)
    kinds = {type(m) for m in model.modules()}
    assert (Int8Linear if bits == 8 else Int4Linear) in kinds and nn.Linear not in kinds
    assert isinstance(model.tok_emb, nn.Embedding)  # lookups keep float rows
    agree = (out.argmax(-1) == ref.argmax(-1)).float().mean()
    assert agree > 0.9
    assert torch.corrcoef(torch.stack([out.flatten(), ref.flatten()]))[0, 1] > 0.99


def test_include_filter_and_bad_bits():
    model = Transformer(get_preset("llama-tiny", vocab_size=256))
    quantize(model, 8, include=lambda name, m: "mlp" in name)
    assert isinstance(model.blocks[0].mlp.up_proj, Int8Linear)
    assert isinstance(model.blocks[0].attn.q_proj, nn.Linear)
    with pytest.raises(ParrotError, match="8 or 4"):
        quantize(model, 3)
