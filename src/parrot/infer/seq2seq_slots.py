"""What the engine keeps per slot for an encoder-decoder: the source's cross-attention.

A decoder-only slot holds the keys/values of its prompt. An encoder-decoder's prompt is a
source text that the decoder never sees as tokens: the encoder runs on it once when the
request is admitted, each decoder layer projects that memory to its cross-attention keys
and values, and they stay in the slot (with the source's padding mask) until the request
ends. The decoder's own self-attention uses the engine's ordinary `KVCache`.
"""

from __future__ import annotations

import torch

from parrot.errors import ParrotError
from parrot.model import KVCache
from parrot.model.seq2seq import Seq2SeqCache


class CrossSlots:
    """Per-layer cross keys/values (max_batch, Hkv, max_source, D) and a source mask."""

    def __init__(self, model: torch.nn.Module, max_batch: int, max_source: int,
                 dtype: torch.dtype, device: torch.device) -> None:
        cfg = model.config
        shape = (max_batch, cfg.kv_heads, max_source, cfg.head_size)
        self.model, self.max_source = model, max_source
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in model.decoder]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in model.decoder]
        # Slot 0 stays visible in idle rows so their (discarded) attention is never all -inf.
        self.mask = torch.zeros(max_batch, max_source, dtype=torch.bool, device=device)
        self.mask[:, 0] = True

    def admit(self, row: int, source: list[int]) -> None:
        """Encode `source` (one request) and store its cross keys/values in `row`."""
        if len(source) > self.max_source:
            raise ParrotError(f"The source has {len(source)} tokens but the encoder holds "
                              f"{self.max_source}; shorten it.")
        src = torch.tensor([source], dtype=torch.long, device=self.mask.device)
        memory = self.model.encode(src)                                  # (1, S, d)
        n = len(source)
        for layer, block in enumerate(self.model.decoder):
            k, v = block.cross.project_memory(memory)                    # (1, Hkv, S, D)
            self.keys[layer][row, :, :n] = k[0]
            self.values[layer][row, :, :n] = v[0]
        self.mask[row] = False
        self.mask[row, :n] = True

    def cache(self, self_attn: KVCache, start: int, stop: int) -> Seq2SeqCache:
        """The decoder's cache for rows start..stop: its self-attention cache plus the
        cross keys/values cut to the longest source any row may hold."""
        cross = [(k[start:stop], v[start:stop]) for k, v in zip(self.keys, self.values,
                                                                 strict=True)]
        return Seq2SeqCache(self_attn, cross, self.mask[start:stop])


def seq2seq_start_id(tokenizer: object) -> int:
    """The decoder's first input: the tokenizer's <s> (or its BOS) token."""
    specials = getattr(tokenizer, "special_tokens", {}) or {}
    start = specials.get("<s>", getattr(tokenizer, "bos_id", None))
    if start is None:
        raise ParrotError("The tokenizer has no <s> or BOS token to start the decoder with; "
                          "use the tokenizer the encoder-decoder was trained with.")
    return int(start)
