"""Hugging Face model folders both ways: config.json + *.safetensors + tokenizer.json.

Families: Llama (and Mistral-style files with the same layout), Qwen2, GPT-2, Gemma 3
(`hf_gemma3.py`) and the mixtures of experts (`hf_moe.py`). Each family is a pair of pure
functions between its `config.json` and a `ModelConfig`, a name table, and the tensor
transforms that go with it (GPT-2's fused, transposed projections, Gemma 3's norm offset,
the MoE selection bias). BART and BERT have their own modules (`hf_bart.py`,
`hf_bert.py`); `load_hf` and `export_hf` dispatch to them, and what all share is in
`hf_common.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from parrot.errors import ParrotError
from parrot.hub.gguf_model import ModelInfo
from parrot.hub.hf_bart import export_bart, load_bart
from parrot.hub.hf_bert import export_bert, load_bert
from parrot.hub.hf_common import (
    config_from_hf,
    export_state,
    finish_loading,
    llama_layout_from_hf,
    llama_layout_to_hf,
    read_json,
    read_safetensors,
    special_ids,
    tokenizer_config,
    write_folder,
)
from parrot.hub.hf_gemma3 import gemma3_from_hf, gemma3_to_hf, is_gemma3
from parrot.hub.hf_moe import FAMILIES as MOE_FAMILIES
from parrot.hub.hf_moe import moe_family
from parrot.hub.naming import (
    HF_GEMMA3,
    HF_GPT2,
    HF_LLAMA,
    gemma_norms_from_canonical,
    gemma_norms_to_canonical,
    invert,
    rename_all,
)
from parrot.model import ModelConfig, Transformer
from parrot.tokenizer import Tokenizer

# Buffers some checkpoints carry that are not weights (GPT-2's causal-mask tables).
_IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq")


# --- Llama ----------------------------------------------------------------------------
def llama_from_hf(c: dict[str, Any]) -> ModelConfig:
    if c.get("hidden_act", "silu") != "silu" or c.get("rope_scaling") or c.get("attention_bias"):
        raise ParrotError("This Llama-family config uses a variant (activation, RoPE scaling "
                          "or attention bias) that parrot does not map yet.")
    return llama_layout_from_hf(c, d_ff=c["intermediate_size"])


def llama_to_hf(cfg: ModelConfig) -> dict[str, Any]:
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", **llama_layout_to_hf(cfg),
        "intermediate_size": cfg.ff_size, "attention_bias": False, "mlp_bias": False,
    }


def is_llama(cfg: ModelConfig) -> bool:
    return (cfg.positions, cfg.norm, cfg.mlp, cfg.bias, cfg.norm_placement) == (
        "rope", "rmsnorm", "swiglu", False, "pre") and not cfg.has_qkv_bias


# --- Qwen2: Llama's layout plus biases on the query/key/value projections -------------
def qwen2_from_hf(c: dict[str, Any]) -> ModelConfig:
    if c.get("use_sliding_window"):
        raise ParrotError("This Qwen2 config uses sliding-window attention, which parrot "
                          "does not map yet.")
    return llama_from_hf({**c, "attention_bias": False}).replace(qkv_bias=True)


def qwen2_to_hf(cfg: ModelConfig) -> dict[str, Any]:
    config = {k: v for k, v in llama_to_hf(cfg).items()
              if k not in ("attention_bias", "mlp_bias", "head_dim")}
    return {**config, "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
            "use_sliding_window": False}


def is_qwen2(cfg: ModelConfig) -> bool:
    return is_llama(cfg.replace(qkv_bias=False)) and cfg.has_qkv_bias and \
        cfg.head_size * cfg.n_heads == cfg.d_model


# --- GPT-2 ----------------------------------------------------------------------------
GPT2_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu",
                    "relu": "relu"}


def gpt2_from_hf(c: dict[str, Any]) -> ModelConfig:
    act = c.get("activation_function", "gelu_new")
    if act not in GPT2_ACTIVATIONS:
        raise ParrotError(f"GPT-2 activation {act!r} is not supported.")
    return ModelConfig(
        vocab_size=c["vocab_size"], context_length=c["n_positions"], d_model=c["n_embd"],
        n_layers=c["n_layer"], n_heads=c["n_head"], d_ff=c.get("n_inner") or 4 * c["n_embd"],
        positions="learned", norm="layernorm", norm_eps=float(c.get("layer_norm_epsilon", 1e-5)),
        mlp=GPT2_ACTIVATIONS[act], bias=True,
        tie_embeddings=bool(c.get("tie_word_embeddings", True)),
    )


def gpt2_to_hf(cfg: ModelConfig) -> dict[str, Any]:
    act = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}[cfg.mlp]
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": cfg.vocab_size,
        "n_positions": cfg.context_length, "n_embd": cfg.d_model, "n_layer": cfg.n_layers,
        "n_head": cfg.n_heads, "n_inner": cfg.ff_size, "activation_function": act,
        "layer_norm_epsilon": cfg.norm_eps, "tie_word_embeddings": cfg.tie_embeddings,
        "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "torch_dtype": "float32",
    }


def is_gpt2(cfg: ModelConfig) -> bool:
    # GPT-2's config has no head size of its own (always n_embd / n_head): a pruned model
    # with fewer heads of the old size is not GPT-2.
    return (cfg.positions, cfg.norm, cfg.bias, cfg.norm_placement, cfg.kv_heads) == (
        "learned", "layernorm", True, "pre", cfg.n_heads) and cfg.mlp in ("gelu_tanh", "gelu",
                                                                            "relu") \
        and cfg.head_size * cfg.n_heads == cfg.d_model


def _transpose_conv1d(name: str, w: torch.Tensor) -> torch.Tensor:
    """GPT-2's Conv1D weights are (in, out): transposed either way, other tensors kept."""
    conv1d = name.endswith(("o_proj.weight", "up_proj.weight", "down_proj.weight"))
    return w.t().contiguous() if conv1d else w


def split_gpt2(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """GPT-2's Conv1D weights are (in, out): transpose; the fused qkv splits into q, k, v."""
    out = {}
    for name, w in state.items():
        if ".attn.qkv." in name:
            prefix, kind = name.split(".attn.qkv.")
            w = w.t() if kind == "weight" else w
            for part, chunk in zip(("q_proj", "k_proj", "v_proj"), w.chunk(3, dim=0), strict=True):
                out[f"{prefix}.attn.{part}.{kind}"] = chunk.contiguous()
        else:
            out[name] = _transpose_conv1d(name, w)
    return out


def fuse_gpt2(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `split_gpt2`."""
    out = {}
    for name, w in state.items():
        if ".attn.q_proj." in name:
            prefix, kind = name.split(".attn.q_proj.")
            parts = [state[f"{prefix}.attn.{p}.{kind}"] for p in ("q_proj", "k_proj", "v_proj")]
            fused = torch.cat(parts, dim=0)
            out[f"{prefix}.attn.qkv.{kind}"] = (fused.t() if kind == "weight" else fused).contiguous()
        elif ".attn.k_proj." not in name and ".attn.v_proj." not in name:
            out[name] = _transpose_conv1d(name, w)
    return out


def _identity(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return state


Transform = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]
# model_type → (config from HF, config to HF, name table, to canonical, from canonical)
FAMILIES: dict[str, tuple[Callable, Callable, dict[str, str], Transform, Transform]] = {
    "llama": (llama_from_hf, llama_to_hf, HF_LLAMA, _identity, _identity),
    "mistral": (llama_from_hf, llama_to_hf, HF_LLAMA, _identity, _identity),
    "qwen2": (qwen2_from_hf, qwen2_to_hf, HF_LLAMA, _identity, _identity),
    "gpt2": (gpt2_from_hf, gpt2_to_hf, HF_GPT2, split_gpt2, fuse_gpt2),
    "gemma3_text": (gemma3_from_hf, gemma3_to_hf, HF_GEMMA3, gemma_norms_to_canonical,
                    gemma_norms_from_canonical),
    **MOE_FAMILIES,
}


# Families with a module of their own: BART (an encoder-decoder, hf_bart.py) and BERT
# (encoder-only, with or without its MLM head, hf_bert.py).
OWN_LOADERS: dict[str, Callable] = {"bart": load_bart, "bert": load_bert}


def is_hf_dir(path: str | Path) -> bool:
    path = Path(path)
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def load_hf(path: str | Path, device: str | torch.device = "cpu"
            ) -> tuple[Transformer, Tokenizer, ModelInfo]:
    """A Hugging Face model folder → (fp32 Transformer in eval mode, tokenizer, info)."""
    root = Path(path)
    config = read_json(root / "config.json")
    family = config.get("model_type")
    if not isinstance(family, str):
        raise ParrotError(f"{root / 'config.json'} needs a model_type string, e.g. \"llama\".")
    if family in OWN_LOADERS:
        return OWN_LOADERS[family](root, config, device)
    if family not in FAMILIES:
        raise ParrotError(f"{root} holds a {family!r} model; parrot reads Hugging Face "
                          f"folders of: {', '.join([*FAMILIES, *OWN_LOADERS])}.")
    from_hf, _, table, to_canonical, _ = FAMILIES[family]
    cfg = config_from_hf(from_hf, config, root)
    tensors = {k: v.float() for k, v in read_safetensors(root).items()
               if not k.endswith(_IGNORED_SUFFIXES)}
    if family == "gpt2":  # a bare GPT2Model is saved without the "transformer." prefix
        tensors = {k if k.startswith(("transformer.", "lm_head")) else f"transformer.{k}": v
                   for k, v in tensors.items()}
    state = to_canonical(rename_all(tensors, table, str(root)))
    return finish_loading(cfg, state, root, family, device)


def export_hf(model: Transformer, tokenizer: Tokenizer, out: str | Path,
              meta: ModelInfo | None = None) -> Path:
    """Write `model` as a Hugging Face folder that `transformers` opens directly."""
    cfg = model.config
    if cfg.is_encoder_decoder:
        return export_bart(model, tokenizer, out)
    if not cfg.causal and cfg.embed_norm:
        return export_bert(model, tokenizer, out)
    family = (moe_family(cfg) if cfg.is_moe else "llama" if is_llama(cfg)
              else "qwen2" if is_qwen2(cfg) else "gpt2" if is_gpt2(cfg)
              else "gemma3_text" if is_gemma3(cfg) else None)
    if family is None:
        raise ParrotError("This model's architecture matches no Hugging Face family parrot "
                          "exports (Llama: RoPE+RMSNorm+SwiGLU; GPT-2: learned+LayerNorm+GELU; "
                          "Gemma 3: sandwich norms+QK-norm+GeGLU).")
    _, to_hf, table, _, from_canonical = FAMILIES[family]
    state = rename_all(from_canonical(export_state(model)), invert(table), "the model")
    return write_folder(out, {**to_hf(cfg), **special_ids(tokenizer)}, state, tokenizer,
                        tokenizer_config(tokenizer, meta))
