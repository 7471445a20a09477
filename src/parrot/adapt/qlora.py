"""QLoRA-style fine-tuning: the frozen base's Linear weights stay int8 in memory.

Each weight is stored per output row as int8 codes and one float scale:

    s_o = max_i |W_oi| / 127        Q_oi = round(W_oi / s_o) in [-127, 127]        W~ = s * Q

and the layer computes with W~ without ever keeping it in float:

    forward    y = x W~^T + b = (x Q^T) * s + b
    backward   dL/dx = (dL/dy * s) Q
               both over chunks of output rows, each chunk of Q turned to float only
               while it is multiplied, then dropped
               no gradient for Q, s or b: they are frozen

so a LoRA adapter on top (`parrot.adapt.lora` wraps an `Int8Linear` like an nn.Linear)
trains with gradients that equal those of a float model holding W~, while the base costs
1 byte per weight (+ 4 bytes per row) instead of 4. Unlike the QLoRA paper this is int8
per row, not 4-bit NormalFloat with double quantization; a GGUF base is dequantized on
loading and requantized here, so the load itself still peaks at the float size.
"""

from __future__ import annotations

import torch
from torch import nn

CHUNK_ROWS = 1024  # output rows dequantized at a time in the backward pass


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Q int8 (out, in), s float32 (out,)) with s_o = max_i |W_oi| / 127, Q = round(W / s)."""
    w = weight.detach().float()
    scale = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
    codes = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return codes, scale


def dequantize_rows(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """W~ = s * Q as float32 (out, in)."""
    return codes.float() * scale[:, None]


def int8_matmul(x: torch.Tensor, codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x (M, in) @ W~^T = (x Q^T) * s -> (M, out), Q cast to float one row chunk at a time.

    torch's `_weight_int8pack_mm` CPU kernel was measured here 6x (M=1) to 35x (M=256)
    slower than casting a chunk and calling the float matmul, so training uses the latter.
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
    """y = x W~^T with a gradient for x only (the weight is frozen)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(codes, scale)  # the int8 codes themselves, no float copy
        return int8_matmul(x, codes, scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        codes, scale = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None
        return int8_grad_input(grad, codes, scale), None, None


class Int8Linear(nn.Module):
    """A frozen Linear layer stored as int8 rows + scales (see the module docstring)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        codes, scale = quantize_rows(linear.weight)
        # Frozen parameters (not buffers): they move with .to(device) and checkpoints of
        # trainable state skip them.
        self.codes = nn.Parameter(codes, requires_grad=False)
        self.scale = nn.Parameter(scale, requires_grad=False)
        bias = None if linear.bias is None else linear.bias.detach().clone()
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)                           # (M, in)
        y = _FrozenInt8Matmul.apply(flat, self.codes, self.scale)        # (M, out)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.reshape(*x.shape[:-1], self.out_features)

    def to_linear(self) -> nn.Linear:
        """A float nn.Linear holding W~ (for merging an adapter into the weights)."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                           device=self.codes.device)
        with torch.no_grad():
            linear.weight.copy_(dequantize_rows(self.codes, self.scale))
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        return linear

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 rows"


def quantize_linears(model: nn.Module) -> list[str]:
    """Replace every nn.Linear (except heads tied to an embedding) by a frozen Int8Linear."""
    embedded = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    chosen = [(n, m) for n, m in model.named_modules()
              if isinstance(m, nn.Linear) and id(m.weight) not in embedded]
    for name, module in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, Int8Linear(module))
    for p in model.parameters():
        p.requires_grad_(False)
    return [n for n, _ in chosen]


def weight_bytes(model: nn.Module) -> int:
    """Bytes held by the model's parameters and buffers (each shared tensor once)."""
    seen = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    return sum(t.numel() * t.element_size() for t in seen.values())
