"""Projection fusion for inference: linears that read the same input become one.

Attention's q, k and v projections, and a gated MLP's gate and up projections, each read
the same activations. Stacking their weight rows into one `nn.Linear` gives one call and
one pass over the input per group instead of two or three: at decode time, where every
call has a fixed cost and the matrices are small, this is a measurable share of a step.
The stacked layer computes exactly the same numbers. `fuse_projections` swaps the
modules from outside (the model's own modules keep the separate, named projections that
checkpoints, LoRA targets and Hugging Face files use), and a fused module saves its
state under the original names, so a prepared model's state-dict keys do not change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from parrot.adapt.swap import replace_modules
from parrot.model.attention import Attention, AttentionInputs
from parrot.model.mlp import MLP


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


def save_as_parts(module: nn.Module, stacked: str, parts: Sequence[str],
                  sizes: Sequence[int]) -> None:
    """Make `module.state_dict()` hold each tensor of its child `stacked` whose rows are
    the stacked outputs as the original `parts`' tensors (rows split by `sizes`)."""
    def hook(_: nn.Module, state: dict, prefix: str, __: object) -> None:
        head = f"{prefix}{stacked}."
        for key in [k for k in state if k.startswith(head)]:
            if state[key].dim() and state[key].shape[0] == sum(sizes):
                tensor, leaf = state.pop(key), key[len(head):]
                for part, piece in zip(parts, tensor.split(list(sizes)), strict=True):
                    state[f"{prefix}{part}.{leaf}"] = piece

    module.register_state_dict_post_hook(hook)


class FusedAttention(Attention):
    """`Attention` with q, k and v computed by one stacked `qkv_proj`.

    Built from an existing layer (sharing its norms and output projection); it does not
    run `Attention.__init__`, which would allocate fresh projections.
    """

    def __init__(self, attn: Attention) -> None:
        nn.Module.__init__(self)
        self.n_heads, self.n_kv_heads, self.head_dim = attn.n_heads, attn.n_kv_heads, attn.head_dim
        self.dropout, self.scale = attn.dropout, attn.scale
        self.q_norm, self.k_norm = attn.q_norm, attn.k_norm
        parts = [attn.q_proj, attn.k_proj, attn.v_proj]
        self.sizes = [layer.out_features for layer in parts]
        self.qkv_proj = stack_linears(parts)
        self.o_proj = attn.o_proj
        self.train(attn.training)
        save_as_parts(self, "qkv_proj", ("q_proj", "k_proj", "v_proj"), self.sizes)

    def forward(self, x: torch.Tensor, inputs: AttentionInputs, layer: int) -> torch.Tensor:
        q, k, v = self.qkv_proj(x).split(self.sizes, dim=-1)
        return self.o_proj(self.attend(q, k, v, inputs, layer))


class FusedMLP(MLP):
    """A gated `MLP` with gate and up computed by one stacked `gate_up_proj`."""

    def __init__(self, mlp: MLP) -> None:
        nn.Module.__init__(self)
        self.act = mlp.act
        self.gate_up_proj = stack_linears([mlp.gate_proj, mlp.up_proj])
        self.down_proj = mlp.down_proj
        self.train(mlp.training)
        width = mlp.up_proj.out_features
        save_as_parts(self, "gate_up_proj", ("gate_proj", "up_proj"), (width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(self.act(gate) * up)


def fuse_projections(model: nn.Module,
                     fuse_attention: Callable[[Attention], Attention] = FusedAttention
                     ) -> list[str]:
    """Swap, in place, every attention whose q/k/v can be stacked for `fuse_attention(it)`
    and every gated MLP for a `FusedMLP`; returns the swapped names. Layers that cannot be
    stacked (adapters, quantized) and layers already fused are left as they are."""
    def attention(_: str, m: nn.Module) -> bool:
        return type(m) is Attention and can_stack([m.q_proj, m.k_proj, m.v_proj])

    def gated(_: str, m: nn.Module) -> bool:
        return type(m) is MLP and m.gate_proj is not None and can_stack([m.gate_proj,
                                                                         m.up_proj])

    names = replace_modules(model, attention, lambda _, m: fuse_attention(m))
    return names + replace_modules(model, gated, lambda _, m: FusedMLP(m))
