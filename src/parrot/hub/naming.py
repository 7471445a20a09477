"""Foreign tensor names ↔ parrot's canonical names, one pure table per format family.

Canonical names are the `Transformer` state-dict keys (`blocks.{i}.attn.q_proj.weight`).
A table maps a foreign pattern to a canonical one; `{i}` stands for the layer index (and,
in the mixture-of-experts tables of `hf_moe.py`, `{e}` for the expert index).
Tensor transforms that go with a renaming (llama.cpp's RoPE row order, GPT-2's fused and
transposed projections, Gemma's norm offset) are separate pure functions, each with its
inverse, so that `to_canonical(from_canonical(x)) == x` holds and is tested for every family.

Gemma's RMSNorm multiplies by (1 + w); inside parrot every RMSNorm is `w * normed`, so
Gemma norm weights get +1 on load from Hugging Face and -1 on export (GGUF files already
store 1 + w).
"""

from __future__ import annotations

import re
from functools import lru_cache

import torch

from parrot.errors import ParrotError

# llama.cpp's names for the Llama family (SmolLM2, Llama, Mistral, ...).
GGUF_LLAMA: dict[str, str] = {
    "token_embd.weight": "tok_emb.weight",
    "output_norm.weight": "final_norm.weight",
    "output.weight": "lm_head.weight",
    "blk.{i}.attn_norm.weight": "blocks.{i}.norm1.weight",
    "blk.{i}.attn_q.weight": "blocks.{i}.attn.q_proj.weight",
    "blk.{i}.attn_k.weight": "blocks.{i}.attn.k_proj.weight",
    "blk.{i}.attn_v.weight": "blocks.{i}.attn.v_proj.weight",
    "blk.{i}.attn_output.weight": "blocks.{i}.attn.o_proj.weight",
    "blk.{i}.ffn_norm.weight": "blocks.{i}.norm2.weight",
    "blk.{i}.ffn_gate.weight": "blocks.{i}.mlp.gate_proj.weight",
    "blk.{i}.ffn_up.weight": "blocks.{i}.mlp.up_proj.weight",
    "blk.{i}.ffn_down.weight": "blocks.{i}.mlp.down_proj.weight",
}

# Hugging Face Llama / Qwen2 / Mistral (`LlamaForCausalLM` and relatives).
HF_LLAMA: dict[str, str] = {
    "model.embed_tokens.weight": "tok_emb.weight",
    "model.norm.weight": "final_norm.weight",
    "lm_head.weight": "lm_head.weight",
    "model.layers.{i}.input_layernorm.weight": "blocks.{i}.norm1.weight",
    "model.layers.{i}.self_attn.q_proj.weight": "blocks.{i}.attn.q_proj.weight",
    "model.layers.{i}.self_attn.k_proj.weight": "blocks.{i}.attn.k_proj.weight",
    "model.layers.{i}.self_attn.v_proj.weight": "blocks.{i}.attn.v_proj.weight",
    "model.layers.{i}.self_attn.q_proj.bias": "blocks.{i}.attn.q_proj.bias",
    "model.layers.{i}.self_attn.k_proj.bias": "blocks.{i}.attn.k_proj.bias",
    "model.layers.{i}.self_attn.v_proj.bias": "blocks.{i}.attn.v_proj.bias",
    "model.layers.{i}.self_attn.o_proj.weight": "blocks.{i}.attn.o_proj.weight",
    "model.layers.{i}.post_attention_layernorm.weight": "blocks.{i}.norm2.weight",
    "model.layers.{i}.mlp.gate_proj.weight": "blocks.{i}.mlp.gate_proj.weight",
    "model.layers.{i}.mlp.up_proj.weight": "blocks.{i}.mlp.up_proj.weight",
    "model.layers.{i}.mlp.down_proj.weight": "blocks.{i}.mlp.down_proj.weight",
}

# llama.cpp's Gemma 3 names: Llama's plus QK-norm and the sandwich norms. `ffn_norm` is
# the pre-MLP norm (norm2) as in Llama. Gemma's q/k rows are NOT permuted by llama.cpp's
# converter (its rotary embedding is NeoX-style, the half-split pairing parrot uses).
GGUF_GEMMA3: dict[str, str] = {
    **GGUF_LLAMA,
    "blk.{i}.attn_q_norm.weight": "blocks.{i}.attn.q_norm.weight",
    "blk.{i}.attn_k_norm.weight": "blocks.{i}.attn.k_norm.weight",
    "blk.{i}.post_attention_norm.weight": "blocks.{i}.post_attn_norm.weight",
    "blk.{i}.post_ffw_norm.weight": "blocks.{i}.post_mlp_norm.weight",
}

# Hugging Face Gemma 3 text models (`Gemma3ForCausalLM`): Llama's names without biases,
# plus QK-norm and the sandwich norms. Unlike Llama, Gemma's `post_attention_layernorm` is
# the sandwich norm on the attention output (it replaces Llama's entry), and the pre-MLP
# norm is `pre_feedforward_layernorm`.
HF_GEMMA3: dict[str, str] = {
    **{k: v for k, v in HF_LLAMA.items() if not k.endswith(".bias")},
    "model.layers.{i}.self_attn.q_norm.weight": "blocks.{i}.attn.q_norm.weight",
    "model.layers.{i}.self_attn.k_norm.weight": "blocks.{i}.attn.k_norm.weight",
    "model.layers.{i}.post_attention_layernorm.weight": "blocks.{i}.post_attn_norm.weight",
    "model.layers.{i}.pre_feedforward_layernorm.weight": "blocks.{i}.norm2.weight",
    "model.layers.{i}.post_feedforward_layernorm.weight": "blocks.{i}.post_mlp_norm.weight",
}

# Hugging Face GPT-2. `c_attn` holds q, k and v fused; Conv1D stores weights transposed.
# Every norm and projection has a weight and a bias.
_GPT2_LAYER = {"ln_1": "norm1", "attn.c_attn": "attn.qkv", "attn.c_proj": "attn.o_proj",
               "ln_2": "norm2", "mlp.c_fc": "mlp.up_proj", "mlp.c_proj": "mlp.down_proj"}
HF_GPT2: dict[str, str] = {
    "transformer.wte.weight": "tok_emb.weight",
    "transformer.wpe.weight": "pos_emb.weight",
    "lm_head.weight": "lm_head.weight",
    **{f"transformer.ln_f.{kind}": f"final_norm.{kind}" for kind in ("weight", "bias")},
    **{f"transformer.h.{{i}}.{src}.{kind}": f"blocks.{{i}}.{dst}.{kind}"
       for src, dst in _GPT2_LAYER.items() for kind in ("weight", "bias")},
}


@lru_cache(maxsize=16)
def _compiled(table_items: tuple[tuple[str, str], ...]) -> list[tuple[re.Pattern, str]]:
    def compile_one(src: str) -> re.Pattern:
        text = re.escape(src).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{e\}", r"(?P<e>\d+)")
        return re.compile(text + "$")
    return [(compile_one(src), dst) for src, dst in table_items]


def rename(name: str, table: dict[str, str]) -> str | None:
    """`name` mapped through `table` (patterns with `{i}`, and `{e}` for experts), or None
    when no entry matches.

    >>> rename("blk.3.attn_q.weight", GGUF_LLAMA)
    'blocks.3.attn.q_proj.weight'
    """
    for pattern, target in _compiled(tuple(table.items())):
        match = pattern.match(name)
        if match:
            return target.format(**match.groupdict())
    return None


def invert(table: dict[str, str]) -> dict[str, str]:
    """The reverse table (canonical → foreign)."""
    return {dst: src for src, dst in table.items()}


def rename_all(tensors: dict[str, torch.Tensor], table: dict[str, str],
               where: str) -> dict[str, torch.Tensor]:
    """Rename every tensor; ParrotError naming the first one the table does not know."""
    out = {}
    for name, tensor in tensors.items():
        new = rename(name, table)
        if new is None:
            raise ParrotError(f"{where} has a tensor {name!r} that parrot does not know how "
                              "to place; this architecture variant is not supported.")
        out[new] = tensor
    return out


def unpermute_rope(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """llama.cpp's q/k row order → Hugging Face's half-split order, per head.

    llama.cpp rotates adjacent pairs (rows 2j, 2j+1 of a head); Hugging Face pairs row j
    with row j + D/2. Viewing a head's D rows as (D/2, 2), the GGUF converter stored the
    transpose of HF's (2, D/2) view; transposing back restores HF's order.
    """
    rows = w.shape[0]
    return (w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:])
            .transpose(1, 2).reshape(w.shape))


def permute_rope(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Hugging Face half-split rows → llama.cpp's adjacent-pair rows (inverse of the above)."""
    rows = w.shape[0]
    return (w.reshape(n_heads, 2, rows // n_heads // 2, *w.shape[1:])
            .transpose(1, 2).reshape(w.shape))


def is_norm_weight(name: str) -> bool:
    """Whether a canonical name is a norm's weight (norm1, post_attn_norm, q_norm, ...)."""
    parts = name.split(".")
    return len(parts) >= 2 and parts[-1] == "weight" and "norm" in parts[-2]


def gemma_norms_to_canonical(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Hugging Face Gemma's RMSNorm computes normed * (1 + w); parrot's computes normed * w.

    So a Gemma checkpoint's norm weights load as w + 1 (and export as w - 1, below).
    llama.cpp's converter already adds the 1 when it writes a GGUF file, so Gemma GGUF
    norm weights load unchanged.
    """
    return {k: v + 1.0 if is_norm_weight(k) else v for k, v in state.items()}


def gemma_norms_from_canonical(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `gemma_norms_to_canonical`: norm weights w → w - 1."""
    return {k: v - 1.0 if is_norm_weight(k) else v for k, v in state.items()}
