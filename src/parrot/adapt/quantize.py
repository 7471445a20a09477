"""Weight-only quantization applied from outside the model: swap `nn.Linear` layers.

Decoding one token reads every weight once, so on a CPU its speed is set by memory
bandwidth. Keeping weights as int8 or int4 (4x or 8x fewer bytes than float32) and
multiplying with kernels that dequantize inside the matmul makes decode faster without
touching the model's code (gpt-fast's recipe).

    int8, per output row o:   s = max|w[o]| / 127,  q = round(w / s),   w ≈ q * s
    int4, per group of 32 inputs:  s = (max - min) / 15,  q = round((w - min) / s) in 0..15,
                                   w ≈ (q - 8) * s + z  with  z = min + 8 s

int8 layers multiply with parrot's own C kernel (`parrot.kernels`): float32 activations,
so the result is the dequantized weight's matmul up to float rounding. Where that kernel
cannot be built, and for int4, PyTorch's weight-only kernels run instead; they want
bfloat16 activations, so inputs are rounded to bfloat16 for the matmul and outputs return
in the input's dtype.

The kernels pay off when one or a few rows are multiplied (decode). A prefill multiplies
hundreds of rows, is bound by arithmetic, and these kernels are slow there, so from
`PREFILL_ROWS` rows on a layer rebuilds its float weight and runs an ordinary matmul.

The output head (`lm_head`, tied to the embedding in SmolLM2: a fifth of the weights) is
quantized too, to `head_bits` (int8 by default even when the layers are int4: its logits
decide every token, and a GGUF usually stores it at 8 bits).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from parrot import kernels
from parrot.errors import ParrotError
from parrot.model.fusion import fuse_projections

INT4_GROUP = 32
# From this many rows (a prefill) the int8 layer dequantizes and runs a float matmul:
# the weight-only kernel wins only when reading weights, not arithmetic, is the bottleneck.
PREFILL_ROWS = 32
INT4_INNER_K_TILES = 2  # the CPU packing needs in_features % (16 * tiles) == 0


def quantize_rows_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8: (q (out, in) int8, s (out,)) with w ≈ q * s[:, None]."""
    w = weight.detach().float()
    scales = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    # In-place steps: one float temporary, not four (the head alone is 113 MB in float32).
    q = (w / scales[:, None]).round_().clamp_(-127, 127).to(torch.int8)
    return q, scales


def quantize_groups_int4(weight: torch.Tensor, group: int = INT4_GROUP
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric int4 per group of `group` inputs: (q (out, in) int32 in 0..15,
    s (out, in/group), z (out, in/group)) with w ≈ (q - 8) * s + z."""
    w = weight.detach().float().reshape(weight.shape[0], -1, group)      # (out, G, group)
    low, high = w.amin(dim=-1), w.amax(dim=-1)
    scales = ((high - low) / 15.0).clamp(min=1e-12)
    q = (w - low[..., None]).div_(scales[..., None]).round_().clamp_(0, 15)
    zeros = low + 8.0 * scales
    return q.reshape(weight.shape).to(torch.int32), scales, zeros


class Int8Linear(nn.Module):
    """A Linear with int8 rows and a float32 scale per row (inference only)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        q, scales = quantize_rows_int8(linear.weight)
        self.register_buffer("weight_int8", q.contiguous())
        self.register_buffer("scales", scales.contiguous())
        self.register_buffer("bias", _bias(linear))
        self.native = kernels.available() and self.in_features % kernels.GROUP == 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)                              # (M, in)
        if flat.shape[0] >= PREFILL_ROWS:  # compute-bound: a float matmul is faster here
            weight = self.weight_int8.to(x.dtype) * self.scales.to(x.dtype)[:, None]
            return _finish(flat @ weight.T, x, self.bias, self.out_features)
        if self.native and flat.device.type == "cpu" and not torch.compiler.is_compiling():
            y = kernels.matvec_int8(flat.float().contiguous(), self.weight_int8, self.scales)
        else:
            y = torch.ops.aten._weight_int8pack_mm(flat.to(torch.bfloat16), self.weight_int8,
                                                   self.scales.to(torch.bfloat16))
        return _finish(y, x, self.bias, self.out_features)


class Int4Linear(nn.Module):
    """A Linear with int4 weights in groups of 32 inputs (inference only).

    With parrot's kernels the codes are kept two to a byte in llama.cpp's group layout
    (`pack_nibbles`) with a float32 scale and offset per group, and decode rounds the
    activations to int8 per group, as llama.cpp does. Without them the weights are packed
    for PyTorch's CPU kernel (an opaque layout), and the codes are kept as well so that a
    prefill can rebuild the float weight: 0.5 more bytes per weight.
    """

    def __init__(self, linear: nn.Linear, group: int = INT4_GROUP) -> None:
        super().__init__()
        self.in_features, self.out_features, self.group = (linear.in_features,
                                                           linear.out_features, group)
        q, scales, zeros = quantize_groups_int4(linear.weight, group)
        self.native = kernels.available() and group == kernels.GROUP
        if not self.native:
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, INT4_INNER_K_TILES)
            self.register_buffer("weight_int4", packed)
            # The kernel wants (in/group, out, 2): scale and zero of each group, in bfloat16;
            # the float rebuild then uses the same rounded values.
            params = torch.stack((scales, zeros), dim=-1).transpose(0, 1).contiguous()
            self.register_buffer("scales_zeros", params.to(torch.bfloat16))
            scales, zeros = self.scales_zeros.float().transpose(0, 1).unbind(-1)
        self.register_buffer("codes", pack_nibbles(q, group))
        # w = (q - 8) s + z = q * s + offset, offset = z - 8 s (the group's minimum).
        self.register_buffer("float_scales", scales.contiguous())
        self.register_buffer("float_offsets", (zeros - 8.0 * scales).contiguous())
        self.register_buffer("bias", _bias(linear))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)                              # (M, in)
        if flat.shape[0] >= PREFILL_ROWS:  # compute-bound: a float matmul is faster here
            return _finish(flat @ self.dequantize(x.dtype).T, x, self.bias, self.out_features)
        if self.native and flat.device.type == "cpu" and not torch.compiler.is_compiling():
            y = kernels.matvec_int4(flat.float().contiguous(), self.codes, self.float_scales,
                                    self.float_offsets)
        else:
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(flat.to(torch.bfloat16),
                                                           self.weight_int4, self.group,
                                                           self.scales_zeros)
        return _finish(y, x, self.bias, self.out_features)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The weight the kernels multiply by: q * s + offset per group, (out, in)."""
        q = unpack_nibbles(self.codes, self.group).to(dtype)              # (out, in)
        q = q.view(self.out_features, -1, self.group)                     # (out, G, group)
        s, offsets = self.float_scales.to(dtype), self.float_offsets.to(dtype)
        return q.mul_(s[..., None]).add_(offsets[..., None]).view(self.out_features, -1)


def pack_nibbles(q: torch.Tensor, group: int = INT4_GROUP) -> torch.Tensor:
    """Codes 0..15 (out, in) -> uint8 (out, in/2) in llama.cpp's group layout: in each
    group of `group` inputs, byte j = q[j] + 16 q[j + group/2]."""
    q = q.to(torch.uint8).view(q.shape[0], -1, 2, group // 2)            # (out, G, 2, g/2)
    return (q[:, :, 0] | (q[:, :, 1] << 4)).view(q.shape[0], -1)


def unpack_nibbles(packed: torch.Tensor, group: int = INT4_GROUP) -> torch.Tensor:
    """The inverse of `pack_nibbles`: uint8 (out, in/2) -> uint8 codes (out, in)."""
    b = packed.view(packed.shape[0], -1, group // 2)                     # (out, G, g/2)
    return torch.stack((b & 15, b >> 4), dim=2).view(packed.shape[0], -1)


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
             include: Callable[[str, nn.Linear], bool] | None = None,
             head_bits: int = 8) -> nn.Module:
    """Replace (in place) each `nn.Linear` for which `include(name, module)` holds (all by
    default) with an `Int8Linear` or `Int4Linear`; returns the model. The output head
    (`lm_head`) gets `head_bits` instead of `bits`. Layers whose shape the int4 kernel
    cannot take fall back to int8. A tied output head gets its own quantized copy; the
    embedding table keeps float rows for lookups."""
    for b in (bits, head_bits):
        if b not in (4, 8):
            raise ParrotError(f"Quantization to {b} bits is not available; use 8 or 4.")
    targets = [(name, module) for name, module in model.named_modules()
               if isinstance(module, nn.Linear) and (include is None or include(name, module))]
    for name, module in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        width = head_bits if name == "lm_head" else bits
        swapped = Int4Linear(module) if width == 4 and int4_fits(module) else Int8Linear(module)
        setattr(parent, attr, swapped)
    return model


QUANTIZE_MODES = ("auto", "none", "int8", "int4")


# Checkpoint formats whose weights 4-bit groups of 32 hold exactly: Q4_1 blocks span their
# minimum (code 0) to their maximum (code 15), so requantizing recovers the same grid.
EXACT_INT4_SOURCES = ("Q4_1",)


def auto_mode(source: str | None = None) -> str:
    """What "auto" means on a CPU for a checkpoint stored as `source` (a GGUF quantization
    such as "Q4_1" or "Q4_K_M"; None: float weights): 4-bit layers when they reproduce the
    file's own weights and parrot's kernels run (the fastest decode in
    benchmarks/bench_pretrained.py), else int8, whose float32 activations stay closest to
    the float model (requantizing Gemma's Q4_K_M to 4 bits visibly changes its answers)."""
    return "int4" if source in EXACT_INT4_SOURCES and kernels.available() else "int8"


def quantize_for_inference(model: nn.Module, mode: str = "auto",
                           source: str | None = None) -> nn.Module:
    """Prepare a model for generation: fuse its projections (`fuse_projections`) and apply
    the quantization asked for: "none", "int8" (layers and head), "int4" (layers int4,
    head int8) or "auto" (`auto_mode(source)` on a CPU, none elsewhere: the weight-only
    kernels are CPU ones). `source` is the checkpoint's own quantization, if any
    (`ModelInfo.quantization`). Applied in place; returns the model, for inference only."""
    if mode not in QUANTIZE_MODES:
        raise ParrotError(f"Unknown quantization {mode!r}; use one of "
                          f"{', '.join(QUANTIZE_MODES)}.")
    on_cpu = all(p.device.type == "cpu" for p in model.parameters())
    if mode == "auto":
        mode = auto_mode(source) if on_cpu else "none"
    if mode != "none" and not on_cpu:
        raise ParrotError(f"--quantize {mode} runs on the CPU only; drop it or use --device cpu.")
    fuse_projections(model)
    if mode == "none":
        return model
    return quantize(model, 8 if mode == "int8" else 4)
