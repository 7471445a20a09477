"""Inference preparation (fusion, parrot's kernels, quantization) swaps modules from
outside: the prepared model computes what the unprepared one does, keeps its state-dict
keys, and the model's own modules know nothing of it."""

from __future__ import annotations

import copy
import os

import pytest
import torch

from parrot import kernels
from parrot.adapt.fusion import FusedAttention, FusedMLP
from parrot.adapt.native import NativeAttention, NativeRMSNorm
from parrot.adapt.prepare import prepare_for_inference
from parrot.adapt.quantize import Int8Linear, quantize
from parrot.errors import ParrotError
from parrot.model import KVCache, ModelConfig, Transformer, get_preset

SETTINGS = kernels.settings_from(os.environ)  # the tests, like the CLI, read the environment
LLAMA = get_preset("llama-tiny", vocab_size=96)
GEMMA_LIKE = ModelConfig(
    vocab_size=96, context_length=64, d_model=64, n_layers=4, n_heads=4, n_kv_heads=2,
    head_dim=32, positions="rope", rope_theta=1_000_000.0, rope_local_theta=10_000.0,
    norm="rmsnorm", norm_eps=1e-6, norm_placement="sandwich", mlp="geglu_tanh", bias=False,
    embed_scale=True, qk_norm=True, sliding_window=4, global_every=2, attn_scale=0.3)
CONFIGS = {"llama": LLAMA, "sliding-qk-norm": GEMMA_LIKE,
           "sliding": GEMMA_LIKE.replace(qk_norm=False)}

pytestmark = pytest.mark.usefixtures("one_thread")


def build(cfg: ModelConfig) -> Transformer:
    torch.manual_seed(0)
    return Transformer(cfg).eval()


@torch.no_grad()
def decode(model: Transformer, prompts: list[list[int]], steps: int = 4) -> torch.Tensor:
    """Logits of a right-padded batched prefill, then `steps` fixed tokens per row, each
    row at its own position, (rows, prefill + steps, vocab) of the last positions."""
    width = max(map(len, prompts))
    cache = KVCache(model.config, len(prompts), 16)
    logits = model(torch.tensor([p + [0] * (width - len(p)) for p in prompts]), cache=cache)
    out = [torch.stack([logits[b, len(p) - 1] for b, p in enumerate(prompts)])]
    for step in range(steps):
        positions = torch.tensor([[len(p) + step] for p in prompts])
        tokens = torch.tensor([[(7 * step + b) % 96] for b in range(len(prompts))])
        out.append(model(tokens, positions=positions, cache=cache)[:, -1])
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_prepared_float_model_computes_the_same_numbers(name, native):
    model = build(CONFIGS[name])
    prepared = prepare_for_inference(copy.deepcopy(model), "none",
                                     **{**SETTINGS, "native": native})
    prompts = [[5, 17, 9], [1, 2, 3, 4, 5, 6], [40]]
    torch.testing.assert_close(decode(prepared, prompts), decode(model, prompts),
                               rtol=1e-5, atol=1e-5)
    kinds = {type(m) for m in prepared.modules()}
    assert FusedMLP in kinds and (FusedAttention in kinds or NativeAttention in kinds)
    if native and kernels.load(**SETTINGS) is not None:
        assert NativeRMSNorm in kinds
        assert (NativeAttention in kinds) == (not CONFIGS[name].qk_norm)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_prepared_int8_model_equals_the_plainly_quantized_one(name):
    """Per-row int8 gives stacked rows the scales they had apart, so fusing first and the
    kernels change nothing but float rounding."""
    model = build(CONFIGS[name])
    prepared = copy.deepcopy(prepare_for_inference(copy.deepcopy(model), "int8", **SETTINGS))
    plain = quantize(copy.deepcopy(model), 8)
    prompts = [[5, 17, 9], [1, 2, 3, 4, 5, 6]]
    torch.testing.assert_close(decode(prepared, prompts), decode(plain, prompts),
                               rtol=1e-4, atol=1e-4)
    assert any(isinstance(m, Int8Linear) for m in prepared.modules())


@pytest.mark.parametrize("name", list(CONFIGS))
def test_preparation_keeps_the_state_dict_keys_and_the_model_classes(name):
    model = build(CONFIGS[name])
    keys = sorted(model.state_dict())
    prepare_for_inference(model, "none", **SETTINGS)
    assert sorted(model.state_dict()) == keys
    fresh = build(CONFIGS[name])
    assert fresh.load_state_dict(model.state_dict()) is not None


def test_unknown_mode_and_quantizing_off_the_cpu_are_parrot_errors():
    with pytest.raises(ParrotError, match="Unknown quantization 'int3'"):
        prepare_for_inference(build(LLAMA), "int3", **SETTINGS)
    with pytest.raises(ParrotError, match="CPU only"):
        prepare_for_inference(build(LLAMA).to("meta"), "int8", **SETTINGS)


@pytest.mark.slow
@pytest.mark.parametrize("mode, tol", [("int8", 1e-5), ("int4", 2e-2)])
def test_compiled_prepared_model_equals_eager(mode, tol):
    """A compiled graph takes the modules' PyTorch paths (it cannot trace a C call); int4's
    eager kernel rounds activations, its compiled float matmul does not."""
    model = prepare_for_inference(build(LLAMA), mode, **SETTINGS)
    compiled = torch.compile(model, fullgraph=False)
    prompts = [[5, 17, 9], [1, 2, 3, 4, 5, 6]]
    torch.testing.assert_close(decode(compiled, prompts), decode(model, prompts),
                               rtol=tol, atol=tol)
