"""Weight-only quantization applied from outside the model: swap `nn.Linear` layers.

Decoding one token reads every weight once, so on a CPU its speed is set by memory
bandwidth. Keeping weights as int8 or int4 (4x or 8x fewer bytes than float32) and
multiplying with PyTorch's weight-only kernels, which dequantize inside the matmul, makes
decode faster without touching the model's code (gpt-fast's recipe). The kernels are
fast on CPU with bfloat16 activations, so inputs are rounded to bfloat16 for the matmul
and outputs return in the input's dtype (llama.cpp likewise rounds activations to 8 bits).

    int8, per output row o:   s = max|w[o]| / 127,  q = round(w / s),   w ≈ q * s
    int4, per group of 32 inputs:  s = (max - min) / 15,  q = round((w - min) / s) in 0..15,
                                   w ≈ (q - 8) * s + z  with  z = min + 8 s
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from parrot.errors import ParrotError

INT4_GROUP = 32
# From this many rows (a prefill) the int8 layer dequantizes and runs a float matmul:
# the weight-only kernel wins only when reading weights, not arithmetic, is the bottleneck.
PREFILL_ROWS = 32
INT4_INNER_K_TILES = 2  # the CPU packing needs in_features % (16 * tiles) == 0


def quantize_rows_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8: (q (out, in) int8, s (out,)) with w ≈ q * s[:, None]."""
    w = weight.detach().float()
    scales = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    q = torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scales


def quantize_groups_int4(weight: torch.Tensor, group: int = INT4_GROUP
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric int4 per group of `group` inputs: (q (out, in) int32 in 0..15,
    s (out, in/group), z (out, in/group)) with w ≈ (q - 8) * s + z."""
    w = weight.detach().float().reshape(weight.shape[0], -1, group)      # (out, G, group)
    low, high = w.amin(dim=-1), w.amax(dim=-1)
    scales = ((high - low) / 15.0).clamp(min=1e-12)
    q = torch.round((w - low[..., None]) / scales[..., None]).clamp(0, 15)
    zeros = low + 8.0 * scales
    return q.reshape(weight.shape).to(torch.int32), scales, zeros


class Int8Linear(nn.Module):
    """A Linear with int8 rows and bfloat16 scales (inference only)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        q, scales = quantize_rows_int8(linear.weight)
        self.register_buffer("weight_int8", q.contiguous())
        self.register_buffer("scales", scales.to(torch.bfloat16))
        self.register_buffer("bias", _bias(linear))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)                              # (M, in)
        if flat.shape[0] >= PREFILL_ROWS:  # compute-bound: a float matmul is faster here
            weight = self.weight_int8.to(x.dtype) * self.scales.to(x.dtype)[:, None]
            return _finish(flat @ weight.T, x, self.bias, self.out_features)
        y = torch.ops.aten._weight_int8pack_mm(flat.to(torch.bfloat16), self.weight_int8,
                                               self.scales)
        return _finish(y, x, self.bias, self.out_features)


class Int4Linear(nn.Module):
    """A Linear with int4 weights in groups of 32 inputs, packed for the CPU kernel."""

    def __init__(self, linear: nn.Linear, group: int = INT4_GROUP) -> None:
        super().__init__()
        self.in_features, self.out_features, self.group = (linear.in_features,
                                                           linear.out_features, group)
        q, scales, zeros = quantize_groups_int4(linear.weight, group)
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, INT4_INNER_K_TILES)
        self.register_buffer("weight_int4", packed)
        # The kernel wants (in/group, out, 2): scale and zero of each group.
        params = torch.stack((scales, zeros), dim=-1).transpose(0, 1).contiguous()
        self.register_buffer("scales_zeros", params.to(torch.bfloat16))
        self.register_buffer("bias", _bias(linear))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(torch.bfloat16)         # (M, in)
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(flat, self.weight_int4, self.group,
                                                       self.scales_zeros)
        return _finish(y, x, self.bias, self.out_features)


def _bias(linear: nn.Linear) -> torch.Tensor | None:
    return None if linear.bias is None else linear.bias.detach().float().clone()


def _finish(y: torch.Tensor, x: torch.Tensor, bias: torch.Tensor | None,
            out_features: int) -> torch.Tensor:
    y = y.to(x.dtype)
    if bias is not None:
        y = y + bias.to(x.dtype)
    return y.reshape(*x.shape[:-1], out_features)


def int4_fits(linear: nn.Linear) -> bool:
    return linear.in_features % (16 * INT4_INNER_K_TILES) == 0 and \
        linear.in_features % INT4_GROUP == 0 and linear.out_features % 8 == 0


def quantize(model: nn.Module, bits: int = 8,
             include: Callable[[str, nn.Linear], bool] | None = None) -> nn.Module:
    """Replace (in place) each `nn.Linear` for which `include(name, module)` holds (all by
    default) with an `Int8Linear` or `Int4Linear`; returns the model. Layers whose shape
    the int4 kernel cannot take fall back to int8. A tied output head gets its own
    quantized copy; the embedding table keeps float rows for lookups."""
    if bits not in (4, 8):
        raise ParrotError(f"Quantization to {bits} bits is not available; use 8 or 4.")
    targets = [(name, module) for name, module in model.named_modules()
               if isinstance(module, nn.Linear) and (include is None or include(name, module))]
    for name, module in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        swapped = Int4Linear(module) if bits == 4 and int4_fits(module) else Int8Linear(module)
        setattr(parent, attr, swapped)
    return model
