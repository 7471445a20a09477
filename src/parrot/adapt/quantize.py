"""Weight-only quantization applied from outside the model: swap `nn.Linear` layers.

Decoding one token reads every weight once, so on a CPU its speed is set by memory
bandwidth. Keeping weights as int8 or int4 (4x or 8x fewer bytes than float32) and
multiplying with kernels that dequantize inside the matmul makes decode faster without
touching the model's code (gpt-fast's recipe).

    int8, per output row o:   s = max|w[o]| / 127,  q = round(w / s),   w ≈ q * s
    int4, per group of 32 inputs:  s = (max - min) / 15,  q = round((w - min) / s) in 0..15,
                                   w ≈ (q - 8) * s + z  with  z = min + 8 s

Given parrot's kernels (`parrot.kernels.load`), decode multiplies with its C kernels:
float32 activations for int8, activations rounded to int8 per group for int4 (llama.cpp's
scheme). Without them (and in a compiled graph, which cannot trace a C call), int8
rebuilds float weights a chunk of rows at a time (exact, and what QLoRA's frozen base
trains through: the same class), and int4 runs PyTorch's weight-only kernel, which wants
bfloat16 activations (or, holding only the C layout, a float matmul).

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

from parrot.adapt.swap import replace_modules
from parrot.errors import ParrotError
from parrot.kernels import GROUP, Kernels

INT4_GROUP = 32
# From this many rows (a prefill) a layer dequantizes and runs a float matmul: the
# weight-only kernels win only when reading weights, not arithmetic, is the bottleneck.
PREFILL_ROWS = 32
INT4_INNER_K_TILES = 2  # the CPU packing needs in_features % (16 * tiles) == 0
CHUNK_ROWS = 1024  # output rows turned to float at a time by the exact int8 matmul


def quantize_rows_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8: (q (out, in) int8, s (out,)) with w ≈ q * s[:, None],
    s = max(max|w[o]|, 1e-12) / 127, q = round(w / s) in -127..127 (within s / 2 of w)."""
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


def int8_matmul(x: torch.Tensor, codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x (M, in) @ (Q s)^T = (x Q^T) * s -> (M, out), Q cast to float one row chunk at a time.

    torch's `_weight_int8pack_mm` CPU kernel was measured here 6x (M=1) to 35x (M=256)
    slower than casting a chunk and calling the float matmul, so eager runs use this.
    """
    parts = [(x @ codes[r:r + CHUNK_ROWS].to(x.dtype).T) * scale[r:r + CHUNK_ROWS].to(x.dtype)
             for r in range(0, codes.shape[0], CHUNK_ROWS)]
    return torch.cat(parts, dim=-1)


def int8_grad_input(grad: torch.Tensor, codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """dL/dx = (dL/dy * s) Q for grad (M, out) -> (M, in), Q dequantized chunk by chunk."""
    scaled = grad * scale.to(grad.dtype)                                 # (M, out)
    out = torch.zeros(grad.shape[0], codes.shape[1], dtype=grad.dtype, device=grad.device)
    for r in range(0, codes.shape[0], CHUNK_ROWS):
        out += scaled[:, r:r + CHUNK_ROWS] @ codes[r:r + CHUNK_ROWS].to(grad.dtype)
    return out


class _FrozenInt8Matmul(torch.autograd.Function):
    """y = x (Q s)^T with a gradient for x only (the weight is frozen)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(codes, scale)  # the int8 codes themselves, no float copy
        return int8_matmul(x, codes, scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        codes, scale = ctx.saved_tensors  # called only for x: codes and scale are frozen
        return int8_grad_input(grad, codes, scale), None, None


class Int8Linear(nn.Module):
    """A frozen Linear stored as int8 rows `codes` and a float32 `scale` per row.

    Inference with `kernels` (decode rows, no gradient, eager) uses parrot's C kernel;
    otherwise the exact chunked matmul, which also gives inputs their gradient (QLoRA's
    base: frozen parameters, not buffers, so they move with .to() and trainable-state
    checkpoints skip them).
    """

    def __init__(self, linear: nn.Linear, kernels: Kernels | None = None) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        codes, scale = quantize_rows_int8(linear.weight)
        self.codes = nn.Parameter(codes.contiguous(), requires_grad=False)
        self.scale = nn.Parameter(scale.contiguous(), requires_grad=False)
        bias = _bias(linear)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)
        self.kernels = kernels if self.in_features % GROUP == 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)                              # (M, in)
        # A compiled graph cannot trace a C call (and inductor fails to lower PyTorch's
        # `_weight_int8pack_mm` with a cast scale): it takes the chunked matmul.
        if self.kernels is not None and flat.shape[0] < PREFILL_ROWS and \
                flat.device.type == "cpu" and not torch.is_grad_enabled() and \
                not torch.compiler.is_compiling():
            y = self.kernels.matvec_int8(flat.float().contiguous(), self.codes, self.scale)
        else:
            y = _FrozenInt8Matmul.apply(flat, self.codes, self.scale)
        return _finish(y, x, self.bias, self.out_features)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The weight it multiplies by: codes * scale per row, (out, in)."""
        return self.codes.to(dtype) * self.scale.to(dtype)[:, None]

    def to_linear(self) -> nn.Linear:
        """A float nn.Linear holding the dequantized weight (to merge an adapter into)."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                           device=self.codes.device)
        with torch.no_grad():
            linear.weight.copy_(self.dequantize())
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        return linear

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 rows"


class Int4Linear(nn.Module):
    """A Linear with int4 weights in groups of 32 inputs (inference only).

    With parrot's kernels the codes are kept two to a byte in llama.cpp's group layout
    (`pack_nibbles`) with a float32 scale and offset per group, and decode rounds the
    activations to int8 per group, as llama.cpp does. Without them the weights are packed
    for PyTorch's CPU kernel (an opaque layout), and the codes are kept as well so that a
    prefill can rebuild the float weight: 0.5 more bytes per weight.
    """

    def __init__(self, linear: nn.Linear, kernels: Kernels | None = None,
                 group: int = INT4_GROUP) -> None:
        super().__init__()
        self.in_features, self.out_features, self.group = (linear.in_features,
                                                           linear.out_features, group)
        q, scales, zeros = quantize_groups_int4(linear.weight, group)
        self.kernels = kernels if group == GROUP else None
        if self.kernels is None:
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
        # Compute-bound (a prefill), or compiled with only the C kernel's layout kept (a
        # graph cannot trace a C call): the float matmul.
        if flat.shape[0] >= PREFILL_ROWS or (self.kernels is not None
                                             and torch.compiler.is_compiling()):
            return _finish(flat @ self.dequantize(x.dtype).T, x, self.bias, self.out_features)
        if self.kernels is not None and flat.device.type == "cpu":
            y = self.kernels.matvec_int4(flat.float().contiguous(), self.codes,
                                         self.float_scales, self.float_offsets)
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
             head_bits: int = 8, kernels: Kernels | None = None) -> nn.Module:
    """Replace (in place) each `nn.Linear` for which `include(name, module)` holds (all by
    default) with an `Int8Linear` or `Int4Linear` multiplying with `kernels` (None:
    PyTorch's); returns the model. The output head (`lm_head`) gets `head_bits` instead of
    `bits`. Layers whose shape the int4 kernel cannot take fall back to int8. A tied
    output head gets its own quantized copy; the embedding table keeps float rows for
    lookups."""
    for b in (bits, head_bits):
        if b not in (4, 8):
            raise ParrotError(f"Quantization to {b} bits is not available; use 8 or 4.")

    def make(name: str, module: nn.Linear) -> nn.Module:
        width = head_bits if name == "lm_head" else bits
        if width == 4 and int4_fits(module):
            return Int4Linear(module, kernels)
        return Int8Linear(module, kernels)

    replace_modules(model, lambda name, m: isinstance(m, nn.Linear) and
                    (include is None or include(name, m)), make)
    return model
