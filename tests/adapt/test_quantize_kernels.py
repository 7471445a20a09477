"""Int4 float rebuild (the prefill path), the output head's own width, and the inference
modes the CLI offers: each checked against the float model or a direct formula."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from parrot import kernels
from parrot.adapt.prepare import prepare_for_inference
from parrot.adapt.quantize import (
    PREFILL_ROWS,
    Int4Linear,
    Int8Linear,
    pack_nibbles,
    quantize,
    quantize_groups_int4,
    unpack_nibbles,
)
from parrot.errors import ParrotError
from parrot.model import Transformer, get_preset

SETTINGS = kernels.settings_from(os.environ)  # the tests, like the CLI, read the environment
KERNELS = kernels.load(**SETTINGS)


def test_nibbles_round_trip():
    q = torch.randint(0, 16, (5, 64), dtype=torch.int32)
    packed = pack_nibbles(q)
    assert packed.shape == (5, 32) and packed.dtype == torch.uint8
    assert torch.equal(unpack_nibbles(packed), q.to(torch.uint8))


def test_int4_rebuild_is_the_quantized_weight_with_the_kernels_scales():
    torch.manual_seed(0)
    linear = nn.Linear(64, 16)
    layer = Int4Linear(linear, KERNELS)
    q, s, z = quantize_groups_int4(linear.weight)
    if layer.kernels is None:  # PyTorch's kernel is given bfloat16 scales; parrot's float32
        s, z = s.bfloat16().float(), z.bfloat16().float()
    expected = ((q.float() - 8).view(16, 2, 32) * s[..., None] + z[..., None]).view(16, 64)
    torch.testing.assert_close(layer.dequantize(), expected, rtol=1e-6, atol=1e-6)


def test_int4_prefill_path_is_a_float_matmul_and_agrees_with_the_kernel():
    torch.manual_seed(0)
    linear = nn.Linear(64, 32)
    layer = Int4Linear(linear, KERNELS)
    x = torch.randn(PREFILL_ROWS + 3, 64)
    many = layer(x)  # float path
    torch.testing.assert_close(many, x @ layer.dequantize().T + linear.bias, rtol=1e-5,
                               atol=1e-5)
    one = torch.cat([layer(row[None]) for row in x[:4]])  # kernel path, rounded inputs
    torch.testing.assert_close(one, many[:4], rtol=0.02, atol=0.02)


def test_int4_layers_keep_an_int8_head_unless_asked():
    model = quantize(Transformer(get_preset("llama-tiny", vocab_size=256)), 4)
    assert isinstance(model.lm_head, Int8Linear)
    assert isinstance(model.blocks[0].mlp.up_proj, Int4Linear)
    model = quantize(Transformer(get_preset("llama-tiny", vocab_size=256)), 4, head_bits=4)
    assert isinstance(model.lm_head, Int4Linear)
    with pytest.raises(ParrotError, match="8 or 4"):
        quantize(Transformer(get_preset("llama-tiny", vocab_size=256)), 4, head_bits=2)


@pytest.mark.parametrize("bits, rel_error, agreement", [(8, 0.02, 0.95), (4, 0.12, 0.9)])
def test_quantized_logits_stay_close_to_float(bits, rel_error, agreement):
    """Relative logit error ||q - f|| / ||f|| and argmax agreement, both paths (1 row and
    a prefill-sized block)."""
    torch.manual_seed(0)
    model = Transformer(get_preset("llama-tiny", vocab_size=256)).eval()
    tokens = torch.randint(0, 256, (1, 40))
    with torch.no_grad():
        ref = model(tokens)
        quantize(model, bits)
        block = model(tokens)
        rows = torch.cat([model(tokens[:, : t + 1])[:, -1:] for t in range(0, 40, 8)], dim=1)
    for out, expected in ((block, ref), (rows, ref[:, ::8])):
        assert (out - expected).norm() / expected.norm() < rel_error
        assert (out.argmax(-1) == expected.argmax(-1)).float().mean() >= agreement


def test_inference_modes():
    def linears(model):
        return {type(m) for m in model.modules() if isinstance(m, (nn.Linear, Int8Linear,
                                                                   Int4Linear))}

    fresh = lambda: Transformer(get_preset("llama-tiny", vocab_size=256))  # noqa: E731
    def prepare(*args, **kwargs):
        return prepare_for_inference(fresh(), *args, **{**SETTINGS, **kwargs})

    assert linears(prepare("none")) == {nn.Linear}
    assert linears(prepare("auto")) == {Int8Linear}
    assert linears(prepare("auto", source="Q4_K_M")) == {Int8Linear}
    exact = {Int4Linear, Int8Linear} if KERNELS is not None else {Int8Linear}
    assert linears(prepare("auto", source="Q4_1")) == exact
    assert linears(prepare("auto", source="Q4_1", native=False)) == {Int8Linear}
    assert linears(prepare("int4")) == {Int4Linear, Int8Linear}
    with pytest.raises(ParrotError, match="Unknown quantization 'int3'"):
        prepare("int3")
