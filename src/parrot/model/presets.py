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
    # Gemma 3 270M's shape (from its GGUF metadata): one KV head of 256, sandwich norms,
    # QK-norm, scaled embeddings, 5 sliding layers (window 512, RoPE base 10k) per global.
    "gemma3-270m": ModelConfig(
        vocab_size=262144, context_length=32768, d_model=640, n_layers=18, n_heads=4,
        n_kv_heads=1, head_dim=256, d_ff=2048, positions="rope", rope_theta=1_000_000.0,
        rope_local_theta=10_000.0, norm="rmsnorm", norm_placement="sandwich", norm_eps=1e-6,
        mlp="geglu_tanh", bias=False, tie_embeddings=True, embed_scale=True, qk_norm=True,
        sliding_window=512, global_every=6,
    ),
    # llama-tiny's attention with a sparse MLP: 8 narrow SwiGLU experts, 2 per token,
    # balanced by the loss-free selection bias at u = 0.003 (even load and the best
    # validation loss in benchmarks/bench_moe_balance.py, one seed; u = 0.001 is too slow
    # for 300 steps and 0.01 too coarse for softmax scores of about 1/8).
    "moe-tiny": ModelConfig(
        vocab_size=512, context_length=64, d_model=128, n_layers=4, n_heads=4, n_kv_heads=2,
        positions="rope", norm="rmsnorm", mlp="swiglu", bias=False, tie_embeddings=True,
        n_experts=8, experts_per_token=2, expert_d_ff=128, moe_balance="loss_free",
        moe_bias_rate=0.003,
    ),
    # A small BERT: bidirectional, token types, embedding LayerNorm, post-norm blocks and
    # the MLM head transform; vocab_size follows the run's tokenizer.
    "bert-tiny": ModelConfig(
        vocab_size=1024, context_length=64, d_model=128, n_layers=4, n_heads=4,
        positions="learned", norm="layernorm", norm_placement="post", norm_eps=1e-12,
        mlp="gelu", bias=True, causal=False, tie_embeddings=True, type_vocab_size=2,
        embed_norm=True, head_transform=True,
    ),
    # A small encoder-decoder for CPU seq2seq training (3 + 3 layers, pre-norm, one token
    # table for encoder, decoder and head); vocab_size follows the run's tokenizer.
    "seq2seq-tiny": ModelConfig(
        vocab_size=260, context_length=96, d_model=128, n_layers=3, encoder_layers=3,
        n_heads=4, positions="learned", norm="layernorm", mlp="gelu", bias=True,
        tie_embeddings=True,
    ),
}


def get_preset(name: str, **overrides: Any) -> ModelConfig:
    """The preset `name`, with `overrides` applied (validated)."""
    if name not in PRESETS:
        raise ParrotError(f"Unknown model preset {name!r}; choose one of: "
                          f"{', '.join(sorted(PRESETS))}.")
    config = PRESETS[name]
    return config.replace(**overrides) if overrides else config
