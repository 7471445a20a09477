"""Modules that run parrot's C kernels (`parrot.kernels`), swapped in from outside.

`NativeAttention` does a plain decode step (one new token per row) in one C call: RoPE,
the cache write and attention over the cache, instead of some thirty PyTorch ops;
`NativeRMSNorm` normalizes a few rows in C. Each holds the loaded `Kernels` and falls
back to its PyTorch parent's forward wherever the kernel does not apply: with gradients
(training), inside a compiled graph (it cannot trace a C call), off the CPU or in other
dtypes. Either way the numbers are the same up to float rounding (tests/kernels).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from parrot.adapt.fusion import FusedAttention
from parrot.adapt.swap import replace_modules
from parrot.kernels import Kernels
from parrot.model.attention import Attention, AttentionInputs
from parrot.model.cache import KVCache
from parrot.model.norms import RMSNorm

NATIVE_MAX_VALUES = 1 << 16  # beyond a few rows torch's own kernel is as fast


def _inference(x: torch.Tensor) -> bool:
    """float32 on the CPU, eager, no gradient: where the C kernels may run."""
    return x.dtype == torch.float32 and x.device.type == "cpu" and \
        not torch.is_grad_enabled() and not torch.compiler.is_compiling()


class NativeAttention(FusedAttention):
    """Fused attention whose decode steps run `Kernels.decode_attention` (layers without
    QK-norm, which the kernel does not apply)."""

    def __init__(self, attn: Attention, kernels: Kernels) -> None:
        super().__init__(attn)
        self.kernels = kernels

    def forward(self, x: torch.Tensor, inputs: AttentionInputs, layer: int) -> torch.Tensor:
        cache = inputs.cache
        # The kernel writes slot == position into cache.keys itself: a cache that maps
        # slots its own way (a soft prompt's PrefixedCache) takes the general path.
        if x.shape[1] != 1 or type(cache) is not KVCache or inputs.bias is not None or \
                inputs.capture is not None or cache.keys.dtype != x.dtype or not _inference(x):
            return super().forward(x, inputs, layer)
        B = x.shape[0]
        qkv = self.qkv_proj(x).view(B, -1).contiguous()                # (B, (H + 2 Hkv) D)
        scale = self.scale if self.scale is not None else self.head_dim ** -0.5
        out = self.kernels.decode_attention(
            qkv, inputs.rope, inputs.positions, cache.keys[layer], cache.values[layer],
            self.n_heads, self.n_kv_heads, inputs.window, scale)       # (B, H * D)
        return self.o_proj(out.view(B, 1, -1))


class NativeRMSNorm(RMSNorm):
    """RMSNorm whose few-row inference calls run `Kernels.rms_norm_rows`."""

    def __init__(self, norm: RMSNorm, kernels: Kernels) -> None:
        nn.Module.__init__(self)  # shares the original's weight
        self.eps, self.weight, self.kernels = norm.eps, norm.weight, kernels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() <= NATIVE_MAX_VALUES and x.is_contiguous() and _inference(x) and \
                self.weight.dtype == torch.float32:
            return self.kernels.rms_norm_rows(x, self.weight, self.eps)
        return super().forward(x)


def native_attention(kernels: Kernels) -> Callable[[Attention], FusedAttention]:
    """What `fuse_projections` should build for each attention: a `NativeAttention`, or a
    plain `FusedAttention` for a layer with QK-norm."""
    return lambda attn: FusedAttention(attn) if attn.q_norm is not None else \
        NativeAttention(attn, kernels)


def native_norms(model: nn.Module, kernels: Kernels) -> list[str]:
    """Swap every RMSNorm for a `NativeRMSNorm` in place; returns the swapped names."""
    return replace_modules(model, lambda _, m: type(m) is RMSNorm,
                           lambda _, m: NativeRMSNorm(m, kernels))
