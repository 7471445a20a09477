"""Hugging Face mixture-of-experts folders both ways: Mixtral and Qwen2-MoE.

Both are the Llama layout with the MLP replaced by a sparse MoE block. Checkpoints store
one small MLP per expert (`experts.{e}.w1/w2/w3` in Mixtral, `experts.{e}.gate_proj/...`
in Qwen2-MoE), which is what `transformers` 5.x writes and reads; its in-memory fused
3-D expert tensors never reach the files. The tables below have two placeholders, `{i}`
for the layer and `{e}` for the expert.

Router math in `transformers` 5.23, matched by `parrot.model.moe`: p = softmax(W_r x) in
fp32, top-k on p, Mixtral always renormalises the k weights, Qwen2-MoE only with
`norm_topk_prob`; Qwen2-MoE adds sigmoid(w . x) * shared_expert(x) on every layer.
"""

from __future__ import annotations

from typing import Any

import torch

from parrot.errors import ParrotError
from parrot.hub.hf_common import llama_layout_from_hf, llama_layout_to_hf
from parrot.hub.naming import HF_LLAMA
from parrot.model import ModelConfig

_ATTENTION = {k: v for k, v in HF_LLAMA.items() if ".mlp." not in k}

HF_MIXTRAL: dict[str, str] = {
    **{k: v for k, v in _ATTENTION.items() if not k.endswith(".bias")},
    "model.layers.{i}.block_sparse_moe.gate.weight": "blocks.{i}.mlp.router.weight",
    "model.layers.{i}.block_sparse_moe.experts.{e}.w1.weight":
        "blocks.{i}.mlp.experts.{e}.gate_proj.weight",
    "model.layers.{i}.block_sparse_moe.experts.{e}.w3.weight":
        "blocks.{i}.mlp.experts.{e}.up_proj.weight",
    "model.layers.{i}.block_sparse_moe.experts.{e}.w2.weight":
        "blocks.{i}.mlp.experts.{e}.down_proj.weight",
}

HF_QWEN2_MOE: dict[str, str] = {
    **_ATTENTION,
    "model.layers.{i}.mlp.gate.weight": "blocks.{i}.mlp.router.weight",
    **{f"model.layers.{{i}}.mlp.experts.{{e}}.{p}.weight": f"blocks.{{i}}.mlp.experts.{{e}}.{p}.weight"
       for p in ("gate_proj", "up_proj", "down_proj")},
    **{f"model.layers.{{i}}.mlp.shared_expert.{p}.weight": f"blocks.{{i}}.mlp.shared.{p}.weight"
       for p in ("gate_proj", "up_proj", "down_proj")},
    "model.layers.{i}.mlp.shared_expert_gate.weight": "blocks.{i}.mlp.shared_gate.weight",
}


# --- configs --------------------------------------------------------------------------
def _base(c: dict[str, Any], qkv_bias: bool, default_theta: float) -> ModelConfig:
    """The attention side shared by both families (Llama layout)."""
    if c.get("hidden_act", "silu") != "silu":
        raise ParrotError(f"Activation {c.get('hidden_act')!r} is not mapped; parrot reads "
                          "mixture-of-experts models with SiLU (SwiGLU) experts.")
    scaling = c.get("rope_scaling") or c.get("rope_parameters") or {}
    if scaling.get("rope_type", "default") != "default":
        raise ParrotError("This config uses RoPE scaling, which parrot does not map yet.")
    return llama_layout_from_hf(c, default_theta, qkv_bias=qkv_bias)


def mixtral_from_hf(c: dict[str, Any]) -> ModelConfig:
    if c.get("sliding_window"):
        raise ParrotError("This Mixtral config uses sliding-window attention, which parrot "
                          "does not map yet.")
    return _base(c, False, 1e6).replace(
        n_experts=c["num_local_experts"], experts_per_token=c.get("num_experts_per_tok", 2),
        expert_d_ff=c["intermediate_size"], moe_renormalize=True)


def qwen2_moe_from_hf(c: dict[str, Any]) -> ModelConfig:
    if c.get("use_sliding_window"):
        raise ParrotError("This Qwen2-MoE config uses sliding-window attention, which parrot "
                          "does not map yet.")
    if c.get("decoder_sparse_step", 1) != 1 or c.get("mlp_only_layers"):
        raise ParrotError("This Qwen2-MoE config mixes dense and sparse layers "
                          "(decoder_sparse_step > 1 or mlp_only_layers); parrot maps only "
                          "models whose every layer is sparse.")
    shared = c.get("shared_expert_intermediate_size", 0)
    return _base(c, bool(c.get("qkv_bias", True)), 10000.0).replace(
        n_experts=c["num_experts"], experts_per_token=c.get("num_experts_per_tok", 4),
        expert_d_ff=c["moe_intermediate_size"], shared_experts=1 if shared else 0,
        shared_d_ff=shared or None, shared_expert_gate=bool(shared),
        moe_renormalize=bool(c.get("norm_topk_prob", False)))


def _common_to_hf(cfg: ModelConfig) -> dict[str, Any]:
    return {
        **llama_layout_to_hf(cfg),
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "num_experts_per_tok": cfg.experts_per_token, "router_aux_loss_coef": cfg.moe_aux_coef,
        "output_router_logits": False,
    }


def _expert_width(cfg: ModelConfig) -> int:
    return cfg.expert_d_ff or cfg.ff_size


def mixtral_to_hf(cfg: ModelConfig) -> dict[str, Any]:
    return {**_common_to_hf(cfg), "architectures": ["MixtralForCausalLM"],
            "model_type": "mixtral", "num_local_experts": cfg.n_experts,
            "intermediate_size": _expert_width(cfg), "sliding_window": None,
            "router_jitter_noise": 0.0}


def qwen2_moe_to_hf(cfg: ModelConfig) -> dict[str, Any]:
    shared = cfg.shared_d_ff or _expert_width(cfg)
    return {**_common_to_hf(cfg), "architectures": ["Qwen2MoeForCausalLM"],
            "model_type": "qwen2_moe", "num_experts": cfg.n_experts,
            "intermediate_size": cfg.ff_size, "moe_intermediate_size": _expert_width(cfg),
            "shared_expert_intermediate_size": cfg.shared_experts * shared,
            "norm_topk_prob": cfg.moe_renormalize, "decoder_sparse_step": 1,
            "mlp_only_layers": [], "qkv_bias": cfg.has_qkv_bias, "use_sliding_window": False}


# Fields that must keep their defaults for a config to be one of these two families.
_PLAIN = dict(norm_placement="pre", embed_scale=False, qk_norm=False, sliding_window=None,
              type_vocab_size=0, embed_norm=False, head_transform=False, encoder_layers=0,
              positions="rope", norm="rmsnorm", mlp="swiglu", bias=False, causal=True,
              attn_scale=None, global_every=0, output_head=True)


def _plain_llama_moe(cfg: ModelConfig) -> bool:
    return cfg.is_moe and all(getattr(cfg, k, v) == v for k, v in _PLAIN.items())


def is_mixtral(cfg: ModelConfig) -> bool:
    return (_plain_llama_moe(cfg) and cfg.shared_experts == 0 and cfg.moe_renormalize
            and not cfg.has_qkv_bias)


def is_qwen2_moe(cfg: ModelConfig) -> bool:
    return (_plain_llama_moe(cfg) and cfg.shared_experts == 1 and cfg.shared_expert_gate
            and cfg.head_size * cfg.n_heads == cfg.d_model)


def zero_balance_bias(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Checkpoints carry no selection bias: each layer gets a zero one (one per expert)."""
    return {**state, **{k.replace(".router.weight", ".balance_bias"): torch.zeros(w.shape[0])
                        for k, w in state.items() if k.endswith(".mlp.router.weight")}}


def drop_balance_bias(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `zero_balance_bias`; ParrotError for a bias that is not zero."""
    if any(v.abs().max() > 0 for k, v in state.items() if k.endswith(".balance_bias")):
        raise ParrotError("This model was trained with loss-free balancing and routes with "
                          "a selection bias that Hugging Face's Mixtral and Qwen2-MoE lack; "
                          "it cannot be exported exactly.")
    return {k: v for k, v in state.items() if not k.endswith(".balance_bias")}


def moe_family(cfg: ModelConfig) -> str:
    """'mixtral' or 'qwen2_moe' for an exportable config; ParrotError otherwise."""
    if is_mixtral(cfg):
        return "mixtral"
    if is_qwen2_moe(cfg):
        return "qwen2_moe"
    raise ParrotError("This mixture-of-experts model matches no Hugging Face family parrot "
                      "exports (Mixtral: RoPE+RMSNorm+SwiGLU experts, renormalised, no shared "
                      "expert; Qwen2-MoE: the same plus one sigmoid-gated shared expert).")


# model_type → the five parts of an `hf.FAMILIES` entry (`load_hf`/`export_hf` use them).
FAMILIES = {
    "mixtral": (mixtral_from_hf, mixtral_to_hf, HF_MIXTRAL, zero_balance_bias,
                drop_balance_bias),
    "qwen2_moe": (qwen2_moe_from_hf, qwen2_moe_to_hf, HF_QWEN2_MOE, zero_balance_bias,
                  drop_balance_bias),
}
