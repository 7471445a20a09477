"""Shared pieces for running encoder-only models: framing and batching inputs, and the
check that keeps them out of text generation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.nn.utils.rnn import pad_sequence

from parrot.errors import ParrotError
from parrot.model import ModelConfig


def is_encoder_only(cfg: ModelConfig) -> bool:
    """Bidirectional attention and no decoder: it fills in masks, it does not continue text."""
    return not cfg.causal and not cfg.is_encoder_decoder


def require_decoder(cfg: ModelConfig, name: str = "This model") -> None:
    """ParrotError when asked to generate with an encoder-only model (callers: generate,
    chat, serve, or anything that builds an Engine)."""
    if is_encoder_only(cfg):
        raise ParrotError(f"{name} is an encoder-only (bidirectional) model and cannot "
                          "generate text; use `parrot fill-mask` or `parrot embed` with it.")
    if cfg.is_encoder_decoder:  # it needs a source text, not a prompt to continue
        raise ParrotError(f"{name} is an encoder-decoder model, which maps a source text to "
                          "a target; use `parrot seq2seq generate` with it.")


def frame_inputs(tokenizer: Any, text: str, max_length: int,
                 allowed_special: str | set[str] = "none") -> tuple[list[int], list[int]]:
    """(ids, token_types) of `[CLS] text [SEP]`, truncated to max_length tokens in all.

    WordPiece tokenizers frame their own inputs; a BPE tokenizer uses its [CLS]/[SEP]
    special tokens when it has them (an MLM run's tokenizer does) and nothing otherwise.
    """
    if hasattr(tokenizer, "encode_inputs"):
        return tokenizer.encode_inputs(text, max_length=max_length,
                                       allowed_special=allowed_special)
    specials = tokenizer.special_tokens
    head = [specials["[CLS]"]] if "[CLS]" in specials else []
    tail = [specials["[SEP]"]] if "[SEP]" in specials else []
    body = tokenizer.encode(text, allowed_special=allowed_special)
    body = body[:max(0, max_length - len(head) - len(tail))]
    ids = head + body + tail
    return ids, [0] * len(ids)


def pad_batch(rows: Sequence[tuple[list[int], list[int]]], pad_id: int
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad (ids, types) rows → tokens, token_types, attention_mask, each (B, T) long."""
    def padded(columns: Sequence[list[int]], value: int = 0) -> torch.Tensor:
        return pad_sequence([torch.tensor(c, dtype=torch.long) for c in columns],
                            batch_first=True, padding_value=value)

    return (padded([ids for ids, _ in rows], pad_id), padded([types for _, types in rows]),
            padded([[1] * len(ids) for ids, _ in rows]))


def model_inputs(model: torch.nn.Module, tokens: torch.Tensor, types: torch.Tensor,
                 mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Keyword arguments for `hidden`/`forward` (token types only where the model has them)."""
    device = next(model.parameters()).device
    kwargs = {"attention_mask": mask.to(device)}
    if model.config.type_vocab_size:
        kwargs["token_types"] = types.to(device)
    return {"tokens": tokens.to(device), **kwargs}
