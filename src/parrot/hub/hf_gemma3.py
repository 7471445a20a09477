"""Hugging Face Gemma 3 text models (`Gemma3ForCausalLM`, model_type "gemma3_text") ↔ parrot.

Gemma 3 is parrot's decoder with these switches: sandwich RMSNorms, QK-norm, embeddings
scaled by sqrt(d_model), a GeGLU MLP with GELU's tanh approximation, sliding-window layers
(every `global_every`-th layer global) whose RoPE has its own base, and attention scores
scaled by query_pre_attn_scalar^-0.5. The norm weights differ by one (see naming.py).
"""

from __future__ import annotations

from typing import Any

from parrot.errors import ParrotError
from parrot.model import ModelConfig

SLIDING, FULL = "sliding_attention", "full_attention"


def gemma3_from_hf(c: dict[str, Any]) -> ModelConfig:
    """ModelConfig from a `gemma3_text` config.json (transformers 4.5x or 5.x layout)."""
    _check_supported(c)
    n_layers, head_dim = c["num_hidden_layers"], c.get("head_dim", 256)
    global_every, window = _layer_pattern(c, n_layers)
    global_theta, local_theta = _rope_bases(c)
    scalar = c.get("query_pre_attn_scalar", 256)
    return ModelConfig(
        vocab_size=c["vocab_size"], context_length=c.get("max_position_embeddings", 131072),
        d_model=c["hidden_size"], n_layers=n_layers, n_heads=c["num_attention_heads"],
        n_kv_heads=c.get("num_key_value_heads") or c["num_attention_heads"], head_dim=head_dim,
        d_ff=c["intermediate_size"], positions="rope", rope_theta=global_theta,
        rope_local_theta=local_theta, norm="rmsnorm", norm_placement="sandwich",
        norm_eps=float(c.get("rms_norm_eps", 1e-6)), mlp="geglu_tanh", bias=False,
        tie_embeddings=bool(c.get("tie_word_embeddings", True)), embed_scale=True,
        qk_norm=True, sliding_window=window, global_every=global_every,
        attn_scale=None if scalar == head_dim else float(scalar) ** -0.5,
    )


def gemma3_to_hf(cfg: ModelConfig) -> dict[str, Any]:
    """The config.json of a `Gemma3ForCausalLM` equal to `cfg`."""
    scalar = cfg.head_size if cfg.attn_scale is None else cfg.attn_scale ** -2
    local = cfg.rope_local_theta or cfg.rope_theta
    return {
        "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text",
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model,
        "intermediate_size": cfg.ff_size, "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads, "num_key_value_heads": cfg.kv_heads,
        "head_dim": cfg.head_size, "hidden_activation": "gelu_pytorch_tanh",
        "max_position_embeddings": cfg.context_length, "rms_norm_eps": cfg.norm_eps,
        "tie_word_embeddings": cfg.tie_embeddings,
        "query_pre_attn_scalar": round(scalar) if abs(scalar - round(scalar)) < 1e-6 else scalar,
        "sliding_window": cfg.sliding_window,
        "layer_types": [SLIDING if cfg.is_sliding(i) else FULL for i in range(cfg.n_layers)],
        "rope_parameters": {FULL: {"rope_type": "default", "rope_theta": cfg.rope_theta},
                            SLIDING: {"rope_type": "default", "rope_theta": local}},
        "attention_bias": False, "final_logit_softcapping": None,
        "attn_logit_softcapping": None, "use_bidirectional_attention": False,
        "torch_dtype": "float32",
    }


def is_gemma3(cfg: ModelConfig) -> bool:
    """Whether `cfg` is a Gemma 3 text model (so it exports as `Gemma3ForCausalLM`)."""
    return (cfg.positions, cfg.norm, cfg.norm_placement, cfg.mlp, cfg.bias) == (
        "rope", "rmsnorm", "sandwich", "geglu_tanh", False) and cfg.qk_norm and \
        cfg.embed_scale and not cfg.has_qkv_bias and cfg.causal and not cfg.is_moe


def _check_supported(c: dict[str, Any]) -> None:
    """ParrotError for Gemma 3 variants parrot's model does not express."""
    unsupported = [key for key in ("final_logit_softcapping", "attn_logit_softcapping",
                                   "use_bidirectional_attention", "attention_bias")
                   if c.get(key)]
    if c.get("hidden_activation", "gelu_pytorch_tanh") not in ("gelu_pytorch_tanh", "gelu_tanh"):
        unsupported.append("hidden_activation")
    if unsupported:
        raise ParrotError(f"This Gemma 3 config sets {', '.join(unsupported)}, which parrot "
                          "does not map yet.")


def _layer_pattern(c: dict[str, Any], n_layers: int) -> tuple[int, int | None]:
    """(global_every, sliding_window) from `layer_types` or `sliding_window_pattern`."""
    types = c.get("layer_types")
    if types is None:
        pattern = int(c.get("sliding_window_pattern", 6))
        types = [FULL if (i + 1) % pattern == 0 else SLIDING for i in range(n_layers)]
    if SLIDING not in types:
        return 0, None
    full = [i for i, t in enumerate(types) if t == FULL]
    every = full[0] + 1 if full else 0
    expected = [FULL if every and (i + 1) % every == 0 else SLIDING for i in range(n_layers)]
    if list(types) != expected:
        raise ParrotError("This Gemma 3 config's layer_types do not follow one period (every "
                          "N-th layer global), which parrot cannot express.")
    return every, int(c.get("sliding_window") or 4096)


def _rope_bases(c: dict[str, Any]) -> tuple[float, float]:
    """(global, local) RoPE bases; ParrotError for scaled RoPE (Gemma 3 4B and larger)."""
    params = c.get("rope_parameters") or {}
    full, sliding = params.get(FULL) or {}, params.get(SLIDING) or {}
    for kind in (full, sliding, c.get("rope_scaling") or {}):
        if kind.get("rope_type", "default") != "default":
            raise ParrotError(f"This Gemma 3 config uses RoPE scaling {kind['rope_type']!r}, "
                              "which parrot does not support yet.")
    global_theta = full.get("rope_theta", c.get("rope_theta", 1_000_000.0))
    local_theta = sliding.get("rope_theta", c.get("rope_local_base_freq", 10_000.0))
    return float(global_theta), float(local_theta)
