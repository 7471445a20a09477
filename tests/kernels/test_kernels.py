"""parrot's C decode kernels against plain-torch references written here from their formulas:
int8 and int4 matrix-vector products, RMSNorm rows, decode attention through the model, and
the wrappers' argument checks (building the library: test_kernel_build.py)."""

from __future__ import annotations

import dataclasses
import os
import textwrap

import pytest
import torch
from kernel_helpers import env_for, run_python
from torch import nn

from parrot import kernels
from parrot.adapt.native import NativeAttention, NativeRMSNorm
from parrot.adapt.prepare import prepare_for_inference
from parrot.adapt.quantize import Int8Linear, pack_nibbles
from parrot.model import AttentionCapture, KVCache, Transformer, get_preset
from parrot.model.norms import RMSNorm

SETTINGS = kernels.settings_from(os.environ)  # the tests, like the CLI, read the environment
KERNELS = kernels.load(**SETTINGS)
native = pytest.mark.skipif(KERNELS is None, reason="no C compiler: kernels not built")
SHAPES = [(7, 32), (100, 576), (33, 1536)]  # (out, in)


pytestmark = pytest.mark.usefixtures("one_thread")


def close_to(got: torch.Tensor, want: torch.Tensor, rel: float) -> None:
    """|got - want| <= rel * max|want| everywhere (a relative error on the output's scale)."""
    got, want = got.detach().double(), want.detach().double()
    assert float((got - want).abs().max()) <= rel * float(want.abs().max())


# ---------------------------------------------------------------------------------- int8


@native
@pytest.mark.parametrize("rows", [1, 3, 8])
@pytest.mark.parametrize("out_in", SHAPES, ids=str)
def test_matvec_int8_is_the_dequantized_matmul(rows, out_in):
    out, n_in = out_in
    gen = torch.Generator().manual_seed(rows * 1000 + out)
    q = torch.randint(-127, 128, (out, n_in), generator=gen, dtype=torch.int8)
    scale = torch.rand(out, generator=gen) * 0.02 + 1e-3
    x = torch.randn(rows, n_in, generator=gen)
    want = x.double() @ (q.double() * scale.double()[:, None]).T
    got = KERNELS.matvec_int8(x, q, scale)
    assert got.shape == (rows, out) and got.dtype == torch.float32
    close_to(got, want, 1e-5)


@native
def test_int8_linear_takes_non_contiguous_and_batched_inputs():
    torch.manual_seed(0)
    linear = nn.Linear(64, 24)
    layer = Int8Linear(linear, KERNELS)
    weight = layer.dequantize(torch.float64)
    base = torch.randn(64, 10)
    inputs = {
        "transposed": base.T[:3],                      # (3, 64), strides (1, 10)
        "sliced": torch.randn(4, 128)[:, ::2],         # every other column
        "batched": torch.randn(2, 3, 64).transpose(0, 1),  # (3, 2, 64), non-contiguous
    }
    for name, x in inputs.items():
        assert not x.is_contiguous(), name
        want = x.double() @ weight.T + linear.bias.double()
        with torch.no_grad():
            got = layer(x)
        assert got.shape == (*x.shape[:-1], 24), name
        close_to(got, want, 1e-5)
    # The quantized weight itself is close to the float one (per-row scale max|w| / 127).
    step = linear.weight.abs().amax(1, keepdim=True) / 127
    assert bool(((weight.float() - linear.weight).abs() <= step / 2 + 1e-7).all())


# ---------------------------------------------------------------------------------- int4


def pack_llama(codes: torch.Tensor) -> torch.Tensor:
    """Codes (out, in) in 0..15 -> bytes (out, in / 2): in each group of 32 inputs,
    byte j = code j | code (j + 16) << 4."""
    g = codes.to(torch.uint8).view(codes.shape[0], -1, 32)
    return (g[..., :16] | (g[..., 16:] << 4)).reshape(codes.shape[0], -1)


def reference_int4(x: torch.Tensor, packed: torch.Tensor, scale: torch.Tensor,
                   offset: torch.Tensor) -> torch.Tensor:
    """What the C kernel computes, in float64 after the exact float32 rounding step:
    per group of 32 activations step = amax / 127, xq = round(x * (1 / step)) (half-even,
    as lrintf), y = sum_g step * (scale * (codes . xq) + offset * sum(xq)): the weights
    times the rounded activations, exactly."""
    rows, out = x.shape[0], packed.shape[0]
    groups = x.view(rows, -1, 32)                                        # (rows, G, 32)
    step = groups.abs().amax(-1) / 127.0                                 # float32, (rows, G)
    inverse = torch.where(step > 0, 1.0 / step, torch.zeros_like(step))
    xq = torch.round(groups * inverse[..., None]).double()               # exact integers
    b = packed.view(out, -1, 16)
    codes = torch.cat((b & 15, b >> 4), dim=-1).double()                 # (out, G, 32)
    dots = torch.einsum("rgk,ogk->rog", xq, codes)                       # (rows, out, G)
    scaled = dots * scale.double()[None] * step.double()[:, None]
    shift = offset.double()[None] * (step.double() * xq.sum(-1))[:, None]
    return (scaled + shift).sum(-1)


@native
@pytest.mark.parametrize("rows", [1, 3, 8])
@pytest.mark.parametrize("out_in", SHAPES, ids=str)
def test_matvec_int4_matches_llama_style_rounding(rows, out_in):
    out, n_in = out_in
    gen = torch.Generator().manual_seed(rows * 1000 + out + 1)
    codes = torch.randint(0, 16, (out, n_in), generator=gen)
    packed = pack_llama(codes)
    assert torch.equal(packed, pack_nibbles(codes))  # the module's packer: the same layout
    scale = torch.rand(out, n_in // 32, generator=gen) * 0.01 + 1e-3
    offset = -8 * scale + torch.randn(out, n_in // 32, generator=gen) * 1e-3
    x = torch.randn(rows, n_in, generator=gen)
    if n_in > 32:
        x[0, 32:64] = 0.0  # an all-zero group: step 0, no division by zero
    got = KERNELS.matvec_int4(x, packed, scale, offset)
    assert got.shape == (rows, out)
    close_to(got, reference_int4(x, packed, scale, offset), 1e-4)
    # Against the float matmul with unrounded activations: rounding x moves each x_k by at
    # most step_g / 2, so |error| <= sum_g step_g / 2 * sum_{k in g} |w_k| (plus float
    # noise).
    weight = (codes.double().view(out, -1, 32) * scale.double()[..., None]
              + offset.double()[..., None]).view(out, n_in)
    exact = x.double() @ weight.T
    half_steps = x.view(rows, -1, 32).abs().amax(-1).double() / 127 / 2       # (rows, G)
    bound = half_steps @ weight.abs().view(out, -1, 32).sum(-1).T              # (rows, out)
    error = (got.double() - exact).abs()
    assert bool((error <= bound + 1e-4 * float(exact.abs().max())).all())
    # Weights times rounded activations: about 0.6% here. (Taking the offset term from the
    # unrounded activations, a bug once, made it 0.9-1.0%.)
    assert float((got.double() - exact).norm() / exact.norm()) < 1e-2


@native
def test_int4_activation_rounding_is_half_to_even():
    """0.5 and 2.5 steps round down, 1.5 up: the x * (1 / step) products are exact here."""
    x = torch.zeros(1, 32)
    x[0, :4] = torch.tensor([127.0, 0.5, 1.5, 2.5])  # step = 1
    codes = torch.zeros(1, 32, dtype=torch.long)
    codes[0, 1:4] = torch.tensor([1, 2, 4])
    scale, offset = torch.ones(1, 1), torch.zeros(1, 1)
    got = KERNELS.matvec_int4(x, pack_llama(codes), scale, offset)
    assert float(got) == 0 * 1 + 2 * 2 + 2 * 4  # round(0.5)=0, round(1.5)=2, round(2.5)=2


# ---------------------------------------------------------------------------------- rms norm


def reference_rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    x64 = x.double()
    return x64 / torch.sqrt(x64.pow(2).mean(-1, keepdim=True) + eps) * weight.double()


@native
@pytest.mark.parametrize("dim", [64, 576, 100])
@pytest.mark.parametrize("rows", [1, 2, 3, 4])
def test_rms_norm_rows_is_the_formula(dim, rows):
    gen = torch.Generator().manual_seed(dim + rows)
    x = torch.randn(rows, dim, generator=gen) * 3
    weight = torch.randn(dim, generator=gen)
    got = KERNELS.rms_norm_rows(x, weight, 1e-5)
    torch.testing.assert_close(got.double(), reference_rms(x, weight, 1e-5), rtol=1e-6,
                               atol=1e-6)
    x3 = x.view(rows, 1, dim)  # more dimensions: normalized over the last one
    torch.testing.assert_close(KERNELS.rms_norm_rows(x3, weight, 1e-5), got.view(rows, 1, dim))


@native
@pytest.mark.parametrize("dim", [64, 100])
def test_rms_norm_takes_the_kernel_without_grad_and_agrees_with_torch(dim, monkeypatch):
    calls = []
    original = KERNELS.rms_norm_rows
    monkeypatch.setattr(KERNELS, "rms_norm_rows", lambda *a: calls.append(1) or original(*a))
    torch.manual_seed(dim)
    x = torch.randn(1, 3, dim)
    weight = torch.randn(dim)
    norm = RMSNorm(dim, 1e-6)
    norm.weight.data.copy_(weight)
    native_norm = NativeRMSNorm(norm, KERNELS)
    with_grad = native_norm(x)
    assert not calls  # grad enabled: torch's path
    with torch.no_grad():
        without = native_norm(x)
        strided = native_norm(torch.randn(dim, 3).T)  # non-contiguous: torch
    assert len(calls) == 1
    torch.testing.assert_close(without, with_grad, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(without.double(), reference_rms(x, weight, 1e-6), rtol=1e-6,
                               atol=1e-6)
    assert strided.shape == (3, dim)


# ---------------------------------------------------------------------------------- attention

LLAMA = get_preset("llama-tiny", vocab_size=256)
ATTENTION_CONFIGS = {
    "llama-tiny-gqa": LLAMA,                                              # 4 heads, 2 kv
    "mha": dataclasses.replace(LLAMA, n_kv_heads=None),
    "one-kv-head": dataclasses.replace(LLAMA, n_kv_heads=1),
    "sliding": dataclasses.replace(LLAMA, sliding_window=3, global_every=2,
                                   rope_local_theta=1000.0),
    "learned": dataclasses.replace(LLAMA, positions="learned", context_length=64),
}
PROMPTS = [[5, 17, 99], [1, 2, 3, 4, 5, 6], [200, 7]]
STEPS = 5


def decode_ragged(model: Transformer, max_len: int = 24
                  ) -> tuple[list[list[int]], list[torch.Tensor], KVCache]:
    """Right-padded batched prefill of PROMPTS, then STEPS decode steps with every row at
    its own position (the engine's pattern). Returns the sequences, each step's logits
    (rows, vocab) and the cache."""
    seqs = [list(p) for p in PROMPTS]
    width = max(map(len, seqs))
    cache = KVCache(model.config, len(seqs), max_len)
    padded = torch.tensor([s + [0] * (width - len(s)) for s in seqs])
    with torch.no_grad():
        logits = model(padded, cache=cache)
        last = torch.stack([logits[b, len(s) - 1] for b, s in enumerate(seqs)])
        steps = []
        for step in range(STEPS):
            for b, s in enumerate(seqs):  # a fixed, varied continuation (not argmax)
                s.append((int(last[b].argmax()) + 31 * step + b) % 256)
            positions = torch.tensor([[len(s) - 1] for s in seqs])
            tokens = torch.tensor([[s[-1]] for s in seqs])
            last = model(tokens, positions=positions, cache=cache)[:, -1]
            steps.append(last)
    return seqs, steps, cache


def prepared_model(cfg, native: bool = True) -> Transformer:
    torch.manual_seed(0)
    return prepare_for_inference(Transformer(cfg).eval(), "none", **{**SETTINGS, "native": native})


@native
@pytest.mark.parametrize("name", list(ATTENTION_CONFIGS))
def test_decode_kernel_equals_full_forward_and_general_path(name, monkeypatch):
    cfg = ATTENTION_CONFIGS[name]
    model = prepared_model(cfg)
    calls = []
    original = KERNELS.decode_attention

    def counting(*args, **kwargs):
        calls.append(args[7])  # the window each layer asked for
        return original(*args, **kwargs)

    monkeypatch.setattr(KERNELS, "decode_attention", counting)
    seqs, steps, cache = decode_ragged(model)
    assert len(calls) == STEPS * cfg.n_layers  # the kernel ran for every layer and step
    windows = [cfg.sliding_window if cfg.is_sliding(i) else None for i in range(cfg.n_layers)]
    assert calls[: cfg.n_layers] == windows
    with torch.no_grad():
        for step, last in enumerate(steps):
            for b, s in enumerate(seqs):
                seq = s[: len(PROMPTS[b]) + step + 1]
                full = model(torch.tensor([seq]))[0, -1]
                torch.testing.assert_close(last[b], full, rtol=1e-5, atol=1e-5)

    # The same decode without the kernels writes the same cache and logits.
    calls.clear()
    _, general_steps, general_cache = decode_ragged(prepared_model(cfg, native=False))
    assert not calls
    torch.testing.assert_close(cache.keys, general_cache.keys, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(cache.values, general_cache.values, rtol=1e-6, atol=1e-6)
    for got, want in zip(steps, general_steps, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert float(cache.keys.abs().sum()) > 0


@native
def test_decode_kernel_is_skipped_with_grad_unfused_or_captured(monkeypatch):
    calls = []
    monkeypatch.setattr(KERNELS, "decode_attention", lambda *a: calls.append(1))
    model = prepared_model(LLAMA)
    assert all(isinstance(block.attn, NativeAttention) for block in model.blocks)
    cache = KVCache(LLAMA, 1, 8)
    model(torch.tensor([[4]]), positions=torch.tensor([[3]]), cache=cache)  # grad enabled
    with torch.no_grad():
        model(torch.tensor([[3]]), positions=torch.tensor([[2]]), cache=cache,
              capture=AttentionCapture())
    qk_norm = prepared_model(LLAMA.replace(qk_norm=True))  # the kernel has no QK-norm
    assert not any(isinstance(block.attn, NativeAttention) for block in qk_norm.blocks)
    assert not calls


@native
def test_decode_kernel_with_int32_positions(tmp_path):
    """int32 positions (the general path accepts them) reach C as int64 slot numbers. In a
    subprocess, because reading them as int64 would write out of bounds."""
    script = textwrap.dedent("""
        import torch
        import os
        from parrot.adapt.prepare import prepare_for_inference
        from parrot.kernels import settings_from
        from parrot.model import KVCache, Transformer, get_preset
        torch.manual_seed(0)
        cfg = get_preset("llama-tiny", vocab_size=256)
        model = prepare_for_inference(Transformer(cfg).eval(), "none", **settings_from(os.environ))
        seqs = [[1, 2, 3], [4, 5, 6, 7, 8], [9, 10]]
        cache = KVCache(cfg, 3, 32)
        with torch.no_grad():
            model(torch.tensor([s + [0] * (5 - len(s)) for s in seqs]), cache=cache)
            positions = torch.tensor([[len(s)] for s in seqs], dtype=torch.int32)
            out = model(torch.tensor([[11], [12], [13]]), positions=positions, cache=cache)
            for b, s in enumerate(seqs):
                full = model(torch.tensor([s + [11 + b]]))[0, -1]
                torch.testing.assert_close(out[b, -1], full, rtol=1e-5, atol=1e-5)
        print("OK")
    """)
    result = run_python(script, env_for(tmp_path))
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-2000:]


# ---------------------------------------------------------------------------------- checks


@native
def test_kernel_wrappers_reject_a_wrong_dtype_shape_or_layout_before_calling_c():
    q, scale = torch.zeros(4, 32, dtype=torch.int8), torch.ones(4)
    with pytest.raises(ValueError, match="float32"):
        KERNELS.matvec_int8(torch.zeros(1, 32, dtype=torch.float64), q, scale)
    with pytest.raises(ValueError, match="int8"):
        KERNELS.matvec_int8(torch.zeros(1, 32), q.float(), scale)
    with pytest.raises(ValueError, match="contiguous"):
        KERNELS.matvec_int8(torch.zeros(32, 2).T, q, scale)
    with pytest.raises(ValueError, match="shape"):
        KERNELS.matvec_int8(torch.zeros(1, 32), q, torch.ones(3))
    with pytest.raises(ValueError, match="multiple of 32"):
        KERNELS.matvec_int8(torch.zeros(1, 16), torch.zeros(4, 16, dtype=torch.int8), scale)
    with pytest.raises(ValueError, match="shape"):
        KERNELS.matvec_int4(torch.zeros(1, 64), torch.zeros(4, 32, dtype=torch.uint8),
                            torch.ones(4, 1), torch.ones(4, 2))
    with pytest.raises(ValueError, match="contiguous"):
        KERNELS.rms_norm_rows(torch.zeros(8, 4).T, torch.ones(8), 1e-5)
    keys, qkv = torch.zeros(1, 1, 4, 8), torch.zeros(1, 3 * 8)
    with pytest.raises(ValueError, match=r"slot numbers in 0\.\.3"):
        KERNELS.decode_attention(qkv, None, torch.tensor([4]), keys, keys.clone(), 1, 1, None, 1.0)
    strided = torch.zeros(1, 1, 8, 4).transpose(2, 3)
    with pytest.raises(ValueError, match="contiguous slots"):
        KERNELS.decode_attention(qkv, None, torch.tensor([0]), strided, strided, 1, 1, None, 1.0)
    with pytest.raises(ValueError, match="qkv must be"):
        KERNELS.decode_attention(qkv[:, :16], None, torch.tensor([0]), keys, keys.clone(), 1, 1,
                                 None, 1.0)
