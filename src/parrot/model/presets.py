"""Named architectures as `ModelConfig` values. Override fields with `get_preset(name, **kw)`."""

from __future__ import annotations

from typing import Any

from parrot.errors import ParrotError
from parrot.model.config import ModelConfig

PRESETS: dict[str, ModelConfig] = {
    # The classic small CPU recipe (nanoGPT's shakespeare_char scaled to a laptop):
    # byte vocabulary, learned positions, LayerNorm, GELU, biases, tied head.
    "gpt-tiny": ModelConfig(
        vocab_size=256, context_length=64, d_model=128, n_layers=4, n_heads=4,
        positions="learned", norm="layernorm", mlp="gelu", bias=True, tie_embeddings=True,
    ),
    # The same width and depth with the Llama recipe: RoPE, RMSNorm, SwiGLU, no biases, GQA.
    "llama-tiny": ModelConfig(
        vocab_size=256, context_length=256, d_model=128, n_layers=4, n_heads=4, n_kv_heads=2,
        positions="rope", norm="rmsnorm", mlp="swiglu", bias=False, tie_embeddings=True,
    ),
    # GPT-2 small (124M): gelu_new is GELU's tanh approximation.
    "gpt2-small": ModelConfig(
        vocab_size=50257, context_length=1024, d_model=768, n_layers=12, n_heads=12,
        positions="learned", norm="layernorm", mlp="gelu_tanh", bias=True, tie_embeddings=True,
    ),
    # SmolLM2-135M's shape (Llama architecture, GQA 9/3, tied head).
    "smollm2-135m": ModelConfig(
        vocab_size=49152, context_length=8192, d_model=576, n_layers=30, n_heads=9,
        n_kv_heads=3, d_ff=1536, positions="rope", rope_theta=100000.0, norm="rmsnorm",
        norm_eps=1e-5, mlp="swiglu", bias=False, tie_embeddings=True,
    ),
}


def get_preset(name: str, **overrides: Any) -> ModelConfig:
    """The preset `name`, with `overrides` applied (validated)."""
    if name not in PRESETS:
        raise ParrotError(f"Unknown model preset {name!r}; choose one of: "
                          f"{', '.join(sorted(PRESETS))}.")
    config = PRESETS[name]
    return config.replace(**overrides) if overrides else config
