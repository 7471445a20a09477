"""Hugging Face BERT (`BertModel`, `BertForMaskedLM`; MiniLM is a BertModel) ↔ parrot.

BERT is a configuration of parrot's one transformer: learned positions, token-type
embeddings, a LayerNorm right after the embeddings, post-norm blocks, bidirectional
attention, an erf GELU MLP, and (masked-LM checkpoints only) a prediction head of
dense + GELU + LayerNorm before the tied, biased decoder. A bare `BertModel` has no
prediction head: it loads with `output_head=False` and serves hidden states (embeddings).

Checkpoints name tensors with or without a "bert." prefix; the pooler (dense + tanh on
[CLS], used for next-sentence prediction) and the NSP classifier are not part of the
model parrot builds and are dropped on load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from parrot.errors import ParrotError
from parrot.hub.gguf_model import ModelInfo, instantiate
from parrot.hub.hf_common import config_from_hf, export_state, read_safetensors, write_folder
from parrot.hub.naming import invert, rename_all
from parrot.model import ModelConfig, Transformer
from parrot.tokenizer import Tokenizer, WordPieceTokenizer, load_tokenizer

BERT_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
                    "relu": "relu"}

# Hugging Face BERT (prefix "bert." removed) → canonical.
HF_BERT: dict[str, str] = {
    "embeddings.word_embeddings.weight": "tok_emb.weight",
    "embeddings.position_embeddings.weight": "pos_emb.weight",
    "embeddings.token_type_embeddings.weight": "type_emb.weight",
    "embeddings.LayerNorm.weight": "embed_norm.weight",
    "embeddings.LayerNorm.bias": "embed_norm.bias",
    "cls.predictions.transform.dense.weight": "head_transform.dense.weight",
    "cls.predictions.transform.dense.bias": "head_transform.dense.bias",
    "cls.predictions.transform.LayerNorm.weight": "head_transform.norm.weight",
    "cls.predictions.transform.LayerNorm.bias": "head_transform.norm.bias",
    "cls.predictions.decoder.weight": "lm_head.weight",
    "cls.predictions.bias": "lm_head.bias",
}
_LAYER = {
    "attention.self.query": "attn.q_proj", "attention.self.key": "attn.k_proj",
    "attention.self.value": "attn.v_proj", "attention.output.dense": "attn.o_proj",
    "attention.output.LayerNorm": "norm1", "intermediate.dense": "mlp.up_proj",
    "output.dense": "mlp.down_proj", "output.LayerNorm": "norm2",
}
HF_BERT.update({f"encoder.layer.{{i}}.{src}.{kind}": f"blocks.{{i}}.{dst}.{kind}"
                for src, dst in _LAYER.items() for kind in ("weight", "bias")})

# Tensors a checkpoint may carry that parrot's model does not have.
_DROPPED_PREFIXES = ("pooler.", "cls.seq_relationship.")
_DROPPED_NAMES = ("embeddings.position_ids", "cls.predictions.decoder.bias")


def has_mlm_head(tensors: dict[str, Any]) -> bool:
    """Whether the checkpoint has BERT's masked-LM prediction head."""
    return any(name.removeprefix("bert.").startswith("cls.predictions.") for name in tensors)


def bert_from_hf(c: dict[str, Any], mlm_head: bool = True) -> ModelConfig:
    """ModelConfig for a BERT `config.json` (`mlm_head`: the checkpoint has the MLM head)."""
    act = c.get("hidden_act", "gelu")
    if act not in BERT_ACTIVATIONS:
        raise ParrotError(f"BERT activation {act!r} is not supported; parrot maps "
                          f"{', '.join(BERT_ACTIVATIONS)}.")
    if c.get("position_embedding_type", "absolute") != "absolute":
        raise ParrotError("This BERT config uses relative position embeddings, which parrot "
                          "does not map; only 'absolute' is supported.")
    return ModelConfig(
        vocab_size=c["vocab_size"], context_length=c.get("max_position_embeddings", 512),
        d_model=c["hidden_size"], n_layers=c["num_hidden_layers"],
        n_heads=c["num_attention_heads"], d_ff=c["intermediate_size"], positions="learned",
        norm="layernorm", norm_placement="post", norm_eps=float(c.get("layer_norm_eps", 1e-12)),
        mlp=BERT_ACTIVATIONS[act], bias=True, causal=False,
        tie_embeddings=mlm_head and bool(c.get("tie_word_embeddings", True)),
        type_vocab_size=c.get("type_vocab_size", 2), embed_norm=True,
        head_transform=mlm_head, output_head=mlm_head,
    )


def bert_to_hf(cfg: ModelConfig) -> dict[str, Any]:
    act = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}[cfg.mlp]
    return {
        "architectures": ["BertForMaskedLM" if cfg.output_head else "BertModel"],
        "model_type": "bert", "vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model,
        "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads,
        "intermediate_size": cfg.ff_size, "hidden_act": act,
        "max_position_embeddings": cfg.context_length, "type_vocab_size": cfg.type_vocab_size,
        "layer_norm_eps": cfg.norm_eps, "position_embedding_type": "absolute",
        "tie_word_embeddings": cfg.tie_embeddings, "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0, "torch_dtype": "float32",
    }


def is_bert(cfg: ModelConfig) -> bool:
    return (cfg.positions, cfg.norm, cfg.norm_placement, cfg.bias, cfg.causal,
            cfg.embed_norm, cfg.head_transform == cfg.output_head, cfg.kv_heads) == (
        "learned", "layernorm", "post", True, False, True, True, cfg.n_heads) and \
        cfg.type_vocab_size > 0 and cfg.mlp in ("gelu", "gelu_tanh", "relu")


def prepare_bert(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the "bert." prefix and the tensors parrot's model does not have."""
    stripped = ((name.removeprefix("bert."), tensor) for name, tensor in tensors.items())
    return {name: tensor for name, tensor in stripped
            if not name.startswith(_DROPPED_PREFIXES) and name not in _DROPPED_NAMES}


def load_bert(root: Path, config: dict[str, Any], device: str | torch.device = "cpu"
              ) -> tuple[Transformer, Tokenizer | WordPieceTokenizer, ModelInfo]:
    """A Hugging Face BERT folder → (fp32 Transformer in eval mode, tokenizer, info)."""
    tensors = read_safetensors(root)
    cfg = config_from_hf(bert_from_hf, config, root, mlm_head=has_mlm_head(tensors))
    state = rename_all({k: v.float() for k, v in prepare_bert(tensors).items()}, HF_BERT,
                       str(root))
    model = instantiate(cfg, state, str(root)).to(device)
    tokenizer = load_tokenizer(root)
    info = ModelInfo("hf", root, root.name, "bert", extra={"mlm_head": cfg.output_head,
                                                           **_pooling(root)})
    return model, tokenizer, info


def _pooling(root: Path) -> dict[str, Any]:
    """sentence-transformers' settings beside the weights: max_seq_length and pooling mode."""
    out: dict[str, Any] = {}
    for name in ("sentence_bert_config.json", "1_Pooling/config.json"):
        try:
            data = json.loads((root / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and "max_seq_length" in data:
            out["max_seq_length"] = int(data["max_seq_length"])
        if isinstance(data, dict) and data.get("pooling_mode_cls_token"):
            out["pooling"] = "cls"
        elif isinstance(data, dict) and data.get("pooling_mode_mean_tokens"):
            out["pooling"] = "mean"
    return out


def export_bert(model: Transformer, tokenizer: Tokenizer | WordPieceTokenizer,
                out: str | Path) -> Path:
    """Write a BERT-shaped parrot model as a folder `transformers` opens
    (`BertForMaskedLM` with an MLM head, else `BertModel`)."""
    cfg = model.config
    if not is_bert(cfg):
        raise ParrotError("This encoder does not have BERT's shape (learned positions, token "
                          "types, embedding norm, post-norm LayerNorm blocks); it cannot be "
                          "exported as a Hugging Face BERT.")
    state = rename_all(export_state(model), invert(HF_BERT), "the model")
    if cfg.output_head:  # BertForMaskedLM keeps the encoder under "bert."
        state = {k if k.startswith("cls.") else f"bert.{k}": v for k, v in state.items()}
    specials = {"pad_token_id": tokenizer.special_tokens.get("[PAD]", 0)}
    return write_folder(out, {**bert_to_hf(cfg), **specials}, state, tokenizer)
