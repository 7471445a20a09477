"""KVCache: preallocated keys and values for incremental decoding.

Shapes are static (allocated once), so a decode step can be compiled. Slot index equals
position: a forward writes the keys/values of a token at position p into slot p of its row
before attending, and a query at position p attends to slots 0..p of its own row. A ragged
batch is therefore right-padded, and a finished row is reused by starting again at 0.
The engine, not the model, decides which positions to feed.
"""

from __future__ import annotations

import torch

from parrot.errors import ParrotError
from parrot.model.config import ModelConfig


class KVCache:
    """Per-layer keys and values, each (n_layers, B, n_kv_heads, max_len, head_dim)."""

    def __init__(self, cfg: ModelConfig, batch_size: int, max_len: int,
                 dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                 *, _tensors: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        if _tensors is None:
            if batch_size <= 0 or max_len <= 0:
                raise ParrotError(f"A KV cache needs a positive batch size and length, "
                                  f"got batch_size={batch_size}, max_len={max_len}.")
            shape = (cfg.n_layers, batch_size, cfg.kv_heads, max_len, cfg.head_size)
            _tensors = (torch.zeros(shape, dtype=dtype, device=device),
                        torch.zeros(shape, dtype=dtype, device=device))
        self.config = cfg
        self.keys, self.values = _tensors

    @property
    def batch_size(self) -> int:
        return self.keys.shape[1]

    @property
    def max_len(self) -> int:
        return self.keys.shape[3]

    def rows(self, start: int, stop: int) -> KVCache:
        """A view of rows start..stop-1: writes through it land in this cache."""
        if not 0 <= start < stop <= self.batch_size:
            raise ParrotError(f"Cache rows {start}..{stop} are outside 0..{self.batch_size}.")
        return KVCache(self.config, stop - start, self.max_len,
                       _tensors=(self.keys[:, start:stop], self.values[:, start:stop]))

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor,
               positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (B, Hkv, T, D) at slots `positions` (B, T); return the layer's
        full keys and values (B, Hkv, max_len, D)."""
        layer_k, layer_v = self.keys[layer], self.values[layer]
        if k.shape[0] == 1:  # one row (a single conversation): one indexed copy per tensor
            layer_k[0].index_copy_(1, positions[0], k[0].to(layer_k.dtype))
            layer_v[0].index_copy_(1, positions[0], v[0].to(layer_v.dtype))
            return layer_k, layer_v
        rows = torch.arange(k.shape[0], device=k.device)[:, None].expand_as(positions)
        # Indexing [rows, :, positions] addresses a (B, T, Hkv, D) block.
        layer_k[rows, :, positions] = k.transpose(1, 2).to(layer_k.dtype)
        layer_v[rows, :, positions] = v.transpose(1, 2).to(layer_v.dtype)
        return layer_k, layer_v
