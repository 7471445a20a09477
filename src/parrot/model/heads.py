"""Pieces around the block stack that encoder-only (BERT-style) models add.

BERT's masked-LM head transforms each hidden state before the (tied) output projection:

    logits = W_e (norm(act(W_t h + b_t))) + b

and a padded batch hides its padding keys from attention. Both are small and live here so
the transformer file stays about the stack itself.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from parrot.errors import ParrotError
from parrot.model.attention import AttentionInputs, causal_mask
from parrot.model.config import ModelConfig
from parrot.model.mlp import ACTIVATIONS
from parrot.model.norms import make_norm


class HeadTransform(nn.Module):
    """BERT's prediction-head transform: norm(act(dense(h))), shape-preserving (B, T, d)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.d_model, cfg.d_model, bias=True)
        self.act = ACTIVATIONS[cfg.mlp]
        self.norm = make_norm(cfg, bias=True)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(self.dense(h)))


def padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """allowed[b, 0, t, s] = attention_mask[b, s] == 1 or s == t, shape (B, 1, T, T), bool.

    Padding keys are hidden from every query. A padding query still sees itself, so its
    softmax row is never empty (no NaN); its output is meaningless and callers ignore it.
    """
    B, T = attention_mask.shape
    keep = attention_mask.bool()[:, None, None, :]                        # (B, 1, 1, T)
    eye = torch.eye(T, dtype=torch.bool, device=attention_mask.device)[None, None]
    return keep | eye


def with_padding(inputs: AttentionInputs, attention_mask: torch.Tensor) -> AttentionInputs:
    """The attention inputs of one forward with padded keys masked out as well."""
    if inputs.cache is not None:
        raise ParrotError("attention_mask cannot be combined with a KV cache; right-pad the "
                          "rows and use positions instead.")
    allowed = padding_mask(attention_mask)
    if inputs.mask is not None:
        allowed = allowed & inputs.mask
    elif inputs.is_causal:
        index = torch.arange(attention_mask.shape[1], device=attention_mask.device)
        allowed = allowed & causal_mask(index[None], index)
    return dataclasses.replace(inputs, mask=allowed, is_causal=False)


def check_encoder_inputs(tokens: torch.Tensor, token_types: torch.Tensor | None,
                         attention_mask: torch.Tensor | None, type_vocab_size: int) -> None:
    """ParrotError when token types or the attention mask do not fit the tokens' shape
    (values are not read back: the data loaders keep token types in range)."""
    for name, value in (("token_types", token_types), ("attention_mask", attention_mask)):
        if value is not None and value.shape != tokens.shape:
            raise ParrotError(f"{name} must have the tokens' shape {tuple(tokens.shape)}, "
                              f"got {tuple(value.shape)}.")
    if token_types is not None and type_vocab_size == 0:
        raise ParrotError("This model has no token-type embeddings (type_vocab_size = 0); "
                          "do not pass token_types.")
