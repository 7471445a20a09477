"""Projection fusion for inference: linears that read the same input become one.

Attention's q, k and v projections, and a gated MLP's gate and up projections, each read
the same activations. Stacking their weight rows into one `nn.Linear` gives one call and
one pass over the input per group instead of two or three: at decode time, where every
call has a fixed cost and the matrices are small, this is a measurable share of a step.
The stacked layer computes exactly the same numbers. It is done once, after loading and
before quantizing (`parrot.adapt.quantize`); training keeps the separate, named
projections that checkpoints, LoRA targets and Hugging Face files use.
"""

from __future__ import annotations

import torch
from torch import nn


def stack_linears(linears: list[nn.Linear]) -> nn.Linear:
    """One Linear whose output is the concatenation of the given layers' outputs."""
    weight = torch.cat([layer.weight.detach() for layer in linears])
    has_bias = linears[0].bias is not None
    fused = nn.Linear(weight.shape[1], weight.shape[0], bias=has_bias,
                      device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        fused.weight.copy_(weight)
        if has_bias:
            fused.bias.copy_(torch.cat([layer.bias.detach() for layer in linears]))
    return fused.requires_grad_(False)


def can_stack(linears: list[nn.Module | None]) -> bool:
    """Plain nn.Linear layers (not LoRA-wrapped or quantized) of one input width and
    one bias convention."""
    if not all(type(layer) is nn.Linear for layer in linears):
        return False
    return len({(layer.in_features, layer.bias is None) for layer in linears}) == 1


def fuse_projections(model: nn.Module) -> nn.Module:
    """Fuse every attention's q/k/v and every gated MLP's gate/up in place; returns the
    model. Layers that cannot be stacked (adapters, quantized) are left as they are."""
    for module in model.modules():
        fuse = getattr(module, "fuse_projections", None)
        if callable(fuse):
            fuse()
    return model
