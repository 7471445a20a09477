"""QLoRA-style fine-tuning: the frozen base's Linear weights stay int8 in memory.

Each weight is stored per output row as int8 codes and one float scale:

    s_o = max_i |W_oi| / 127        Q_oi = round(W_oi / s_o) in [-127, 127]        W~ = s * Q

and the layer computes with W~ without ever keeping it in float:

    forward    y = x W~^T + b = (x Q^T) * s + b
    backward   dL/dx = (dL/dy * s) Q
               both over chunks of output rows, each chunk of Q turned to float only
               while it is multiplied, then dropped
               no gradient for Q, s or b: they are frozen

(`parrot.adapt.quantize.Int8Linear`, the same layer inference quantization uses), so a
LoRA adapter on top (`parrot.adapt.lora` wraps an `Int8Linear` like an nn.Linear)
trains with gradients that equal those of a float model holding W~, while the base costs
1 byte per weight (+ 4 bytes per row) instead of 4. Unlike the QLoRA paper this is int8
per row, not 4-bit NormalFloat with double quantization; a GGUF base is dequantized on
loading and requantized here, so the load itself still peaks at the float size.
"""

from __future__ import annotations

from torch import nn

from parrot.adapt.quantize import Int8Linear, quantize

__all__ = ["Int8Linear", "quantize_linears", "weight_bytes"]


def quantize_linears(model: nn.Module) -> list[str]:
    """Replace every nn.Linear (except heads tied to an embedding) by a frozen Int8Linear."""
    embedded = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    names = [n for n, m in model.named_modules() if n
             and isinstance(m, nn.Linear) and id(m.weight) not in embedded]
    quantize(model, 8, include=lambda name, _: name in names)
    model.requires_grad_(False)
    return names


def weight_bytes(model: nn.Module) -> int:
    """Bytes held by the model's parameters and buffers (each shared tensor once)."""
    seen = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    return sum(t.numel() * t.element_size() for t in seen.values())
