"""BART (`BartForConditionalGeneration`) folders both ways, onto `EncoderDecoder`.

BART is the post-norm encoder-decoder with learned positions, a LayerNorm right after the
embeddings (`layernorm_embedding` → `embed_norm`), GELU MLPs, biases everywhere, one token
table shared by encoder, decoder and head (transformers 5 unties all three when
`tie_word_embeddings` is false: `shared_embeddings=False`, `tie_embeddings=False`), optional sqrt(d) embedding scaling
(`scale_embedding` → `embed_scale`) and a logits bias (`final_logits_bias` → head bias).

Its position tables have two extra leading rows: BART looks up position p at row p + 2.
That offset stays at this edge: importing drops the first two rows, exporting puts two
zero rows back, so the model itself indexes positions from 0 like every other one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from parrot.errors import ParrotError
from parrot.hub.gguf_model import ModelInfo, instantiate
from parrot.hub.hf_common import config_from_hf, export_state, read_safetensors, write_folder
from parrot.hub.naming import invert, rename_all
from parrot.model import EncoderDecoder, ModelConfig
from parrot.tokenizer import Tokenizer

POSITION_OFFSET = 2
BART_ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "gelu_new": "gelu_tanh"}

_ATTN = {"q_proj": "q_proj", "k_proj": "k_proj", "v_proj": "v_proj", "out_proj": "o_proj"}


def _bart_table() -> dict[str, str]:
    """HF name → canonical name, for one encoder and one decoder layer pattern."""
    table = {
        "model.shared.weight": "tok_emb.weight",
        "lm_head.weight": "lm_head.weight",
        "final_logits_bias": "lm_head.bias",
        "model.encoder.embed_tokens.weight": "enc_tok_emb.weight",
    }
    for side, ours in (("encoder", "enc"), ("decoder", "dec")):
        table[f"model.{side}.embed_positions.weight"] = f"{ours}_pos_emb.weight"
        for kind in ("weight", "bias"):
            table[f"model.{side}.layernorm_embedding.{kind}"] = f"{ours}_embed_norm.{kind}"
    layer_parts = {"self_attn_layer_norm": "norm1", "final_layer_norm": "norm2",
                   "fc1": "mlp.up_proj", "fc2": "mlp.down_proj",
                   "encoder_attn_layer_norm": "norm_cross"}
    layer_parts |= {f"self_attn.{hf}": f"attn.{ours}" for hf, ours in _ATTN.items()}
    layer_parts |= {f"encoder_attn.{hf}": f"cross.{ours}" for hf, ours in _ATTN.items()}
    for side in ("encoder", "decoder"):
        for hf, ours in layer_parts.items():
            if side == "encoder" and ("encoder_attn" in hf):
                continue
            for kind in ("weight", "bias"):
                table[f"model.{side}.layers.{{i}}.{hf}.{kind}"] = f"{side}.{{i}}.{ours}.{kind}"
    return table


HF_BART: dict[str, str] = _bart_table()
# Copies of model.shared.weight that checkpoints may also store (tied in BART).
_TIED_COPIES = ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight")


def bart_from_hf(c: dict[str, Any]) -> ModelConfig:
    """A BART `config.json` → ModelConfig (ParrotError for variants parrot does not map)."""
    act = c.get("activation_function", "gelu")
    if act not in BART_ACTIVATIONS:
        raise ParrotError(f"BART activation {act!r} is not supported; parrot maps "
                          f"{', '.join(BART_ACTIVATIONS)}.")
    if c.get("normalize_before") or c.get("add_final_layer_norm"):
        raise ParrotError("This BART config uses pre-norm layers (an mBART variant), which "
                          "parrot does not map yet.")
    for a, b in (("encoder_attention_heads", "decoder_attention_heads"),
                 ("encoder_ffn_dim", "decoder_ffn_dim")):
        if c[a] != c[b]:
            raise ParrotError(f"This BART config has {a}={c[a]} but {b}={c[b]}; parrot "
                              "needs encoder and decoder to have the same width.")
    return ModelConfig(
        vocab_size=c["vocab_size"], context_length=c["max_position_embeddings"],
        d_model=c["d_model"], n_layers=c["decoder_layers"], encoder_layers=c["encoder_layers"],
        n_heads=c["decoder_attention_heads"], d_ff=c["decoder_ffn_dim"], positions="learned",
        norm="layernorm", norm_placement="post", norm_eps=1e-5, mlp=BART_ACTIVATIONS[act],
        bias=True, tie_embeddings=bool(c.get("tie_word_embeddings", True)),
        embed_scale=bool(c.get("scale_embedding", False)), embed_norm=True, head_bias=True,
        shared_embeddings=bool(c.get("tie_word_embeddings", True)),
    )


def is_bart(cfg: ModelConfig) -> bool:
    """Whether `cfg` has BART's architecture (so `bart_to_hf` can describe it)."""
    return (cfg.is_encoder_decoder and cfg.positions == "learned" and cfg.norm == "layernorm"
            and cfg.norm_placement == "post" and cfg.embed_norm and cfg.bias
            and cfg.has_qkv_bias and cfg.shared_embeddings == cfg.tie_embeddings
            and cfg.kv_heads == cfg.n_heads
            and cfg.head_size * cfg.n_heads == cfg.d_model and cfg.mlp in ("gelu", "relu",
                                                                            "gelu_tanh"))


def bart_to_hf(cfg: ModelConfig) -> dict[str, Any]:
    """ModelConfig → BART `config.json` (dropouts 0: parrot exports for inference)."""
    if not is_bart(cfg):
        raise ParrotError("This encoder-decoder is not BART-shaped (it needs learned "
                          "positions, post-norm LayerNorm with biases, embed_norm, "
                          "shared_embeddings equal to tie_embeddings and multi-head "
                          "attention), so it cannot be exported as BART.")
    act = {v: k for k, v in BART_ACTIVATIONS.items()}[cfg.mlp]
    return {
        "architectures": ["BartForConditionalGeneration"], "model_type": "bart",
        "is_encoder_decoder": True, "vocab_size": cfg.vocab_size, "d_model": cfg.d_model,
        "max_position_embeddings": cfg.context_length,
        "encoder_layers": cfg.encoder_layers, "decoder_layers": cfg.n_layers,
        "encoder_attention_heads": cfg.n_heads, "decoder_attention_heads": cfg.n_heads,
        "encoder_ffn_dim": cfg.ff_size, "decoder_ffn_dim": cfg.ff_size,
        "activation_function": act, "scale_embedding": cfg.embed_scale,
        "tie_word_embeddings": cfg.tie_embeddings, "dropout": 0.0, "attention_dropout": 0.0,
        "activation_dropout": 0.0, "classifier_dropout": 0.0, "encoder_layerdrop": 0.0,
        "decoder_layerdrop": 0.0, "torch_dtype": "float32",
    }


def bart_to_canonical(tensors: dict[str, torch.Tensor], cfg: ModelConfig,
                      where: str = "the checkpoint") -> dict[str, torch.Tensor]:
    """HF BART tensors → EncoderDecoder state dict (drops the 2 offset position rows)."""
    tensors = dict(tensors)
    if not cfg.shared_embeddings:  # untied: the decoder's own table is parrot's tok_emb
        tensors["model.shared.weight"] = tensors.pop("model.decoder.embed_tokens.weight")
    elif "model.shared.weight" not in tensors:  # some files keep only a tied copy
        for name in _TIED_COPIES:
            if name in tensors:
                tensors["model.shared.weight"] = tensors[name]
                break
    for name in _TIED_COPIES[int(not cfg.shared_embeddings):]:
        tensors.pop(name, None)
    if cfg.tie_embeddings:
        tensors.pop("lm_head.weight", None)
    tensors.setdefault("final_logits_bias", torch.zeros(1, cfg.vocab_size))
    state = rename_all(tensors, HF_BART, where)
    state["lm_head.bias"] = state["lm_head.bias"].reshape(-1)
    for name in ("enc_pos_emb.weight", "dec_pos_emb.weight"):
        state[name] = state[name][POSITION_OFFSET:]
    if cfg.tie_embeddings:
        state["lm_head.weight"] = state["tok_emb.weight"]
    return state


def bart_from_canonical(state: dict[str, torch.Tensor],
                        cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """EncoderDecoder state dict → HF BART tensors (the inverse of `bart_to_canonical`)."""
    state = dict(state)
    if cfg.tie_embeddings:
        state.pop("lm_head.weight", None)
    for name in ("enc_pos_emb.weight", "dec_pos_emb.weight"):
        table = state[name]
        pad = torch.zeros(POSITION_OFFSET, table.shape[1], dtype=table.dtype)
        state[name] = torch.cat([pad, table])
    state["lm_head.bias"] = state["lm_head.bias"].reshape(1, -1)
    tensors = rename_all(state, invert(HF_BART), "the model")
    if not cfg.shared_embeddings:  # transformers 5 reads the decoder's own copy
        tensors["model.decoder.embed_tokens.weight"] = tensors["model.shared.weight"].clone()
    return tensors


def special_ids_from_hf(c: dict[str, Any]) -> dict[str, int]:
    """The token ids generation needs: pad, bos, eos and the decoder's start token."""
    keys = ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id")
    return {k: int(c[k]) for k in keys if isinstance(c.get(k), int)}


def load_bart(root: Path, config: dict[str, Any], device: str | torch.device = "cpu"
              ) -> tuple[EncoderDecoder, Tokenizer, ModelInfo]:
    """A BART folder → (fp32 EncoderDecoder in eval mode, tokenizer, info).

    info.extra holds the special ids (decoder_start_token_id, pad_token_id, ...).
    """
    cfg = config_from_hf(bart_from_hf, config, root)
    tensors = {k: v.float() for k, v in read_safetensors(root).items()}
    model = instantiate(cfg, bart_to_canonical(tensors, cfg, str(root)), str(root),
                        EncoderDecoder)
    ids = special_ids_from_hf(config)
    tokenizer = Tokenizer.load(root)
    eos = ids.get("eos_token_id", tokenizer.eos_id)
    info = ModelInfo("hf", root, root.name, "bart", eos_ids=() if eos is None else (eos,),
                     bos_id=ids.get("bos_token_id", tokenizer.bos_id), extra=ids)
    return model.to(device), tokenizer, info


def export_bart(model: EncoderDecoder, tokenizer: Tokenizer, out: str | Path) -> Path:
    """Write `model` as a BART folder that `transformers` opens directly."""
    cfg = model.config
    state = bart_from_canonical(export_state(model), cfg)
    return write_folder(out, {**bart_to_hf(cfg), **default_special_ids(tokenizer)}, state,
                        tokenizer)


def default_special_ids(tokenizer: Tokenizer) -> dict[str, int]:
    """BART's special ids from a tokenizer's <pad>, <s> and </s> (the decoder starts
    with </s> in BART; parrot's own seq2seq runs start with <s>)."""
    named = {"pad_token_id": tokenizer.special_tokens.get("<pad>"),
             "bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id,
             "decoder_start_token_id": tokenizer.bos_id}
    return {k: v for k, v in named.items() if v is not None}
