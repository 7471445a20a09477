"""Fill-mask: what a masked-LM encoder predicts at each [MASK] of a text.

    text with [MASK] → [CLS] pieces [SEP] → logits (T, V) → softmax at each mask position
                     → the top-k tokens with their probabilities
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from parrot.errors import ParrotError
from parrot.infer.encoder import frame_inputs, is_encoder_only, model_inputs, pad_batch

MASK_NAMES = ("[MASK]", "<mask>")


@dataclass(frozen=True)
class Candidate:
    """One guess for one mask: the token, its probability and the text it makes."""

    token_id: int
    token: str
    probability: float
    sequence: str


def mask_name(tokenizer: Any) -> str:
    """The tokenizer's mask token; ParrotError if it has none."""
    for name in MASK_NAMES:
        if name in tokenizer.special_tokens:
            return name
    raise ParrotError("This model's tokenizer has no [MASK] token, so it cannot fill masks.")


def check_fill_mask_model(model: torch.nn.Module) -> None:
    """ParrotError unless the model is an encoder with an output (masked-LM) head."""
    cfg = model.config
    if not cfg.output_head:
        raise ParrotError("This model has no masked-LM head (it was saved as a bare encoder, "
                          "e.g. a BertModel for embeddings); fill-mask needs a *ForMaskedLM "
                          "checkpoint or a run trained with --objective mlm.")
    if not is_encoder_only(cfg):
        raise ParrotError("fill-mask needs a bidirectional encoder trained by masked language "
                          "modelling; this model is a left-to-right decoder.")


@torch.inference_mode()
def fill_mask(model: torch.nn.Module, tokenizer: Any, text: str, top_k: int = 5
              ) -> list[list[Candidate]]:
    """For each [MASK] in `text` (left to right), its `top_k` most probable tokens."""
    check_fill_mask_model(model)
    name = mask_name(tokenizer)
    if name not in text:
        raise ParrotError(f"The text has no {name}; write {name} where the model should fill "
                          f"in a word, e.g. \"The capital of France is {name}.\"")
    if top_k < 1:
        raise ParrotError(f"top_k must be at least 1, got {top_k}.")
    if not hasattr(tokenizer, "encode_inputs"):
        # Byte-level BPE tokens carry their leading space (" module"), so the mask takes the
        # space before it, as RoBERTa's <mask> does; otherwise " " would be a token of its own.
        text = text.replace(f" {name}", name)
    ids, types = frame_inputs(tokenizer, text, model.config.context_length, {name})
    mask_id = tokenizer.special_tokens[name]
    where = [t for t, i in enumerate(ids) if i == mask_id]
    if not where:
        raise ParrotError(f"The text is longer than the model's context of "
                          f"{model.config.context_length} tokens and its {name} fell off the "
                          "end; shorten the text.")
    logits = model(**model_inputs(model, *pad_batch([(ids, types)], 0)))[0]   # (T, V)
    probs = torch.softmax(logits[where].float(), dim=-1)                    # (M, V)
    top = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
    frame = set(tokenizer.special_tokens.values()) - {mask_id}   # [CLS], [SEP], ...

    def candidate(position: int, p: float, token_id: int) -> Candidate:
        filled = [token_id if k == position else i for k, i in enumerate(ids) if i not in frame]
        return Candidate(token_id, _token_text(tokenizer, token_id), p, tokenizer.decode(filled))

    return [[candidate(position, p, token_id) for p, token_id in
             zip(top.values[m].tolist(), top.indices[m].tolist(), strict=True)]
            for m, position in enumerate(where)]


def _token_text(tokenizer: Any, token_id: int) -> str:
    """A token as a user reads it (WordPiece's "##" kept: it marks a word's continuation)."""
    parts = getattr(tokenizer, "parts", None)
    vocab = getattr(parts, "vocab", None)
    if isinstance(vocab, list):
        return vocab[token_id]
    return tokenizer.decode([token_id])
