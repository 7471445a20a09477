"""Fully sharded data parallelism (FSDP2, `torch.distributed.fsdp.fully_shard`).

With `train.strategy=fsdp` every rank keeps only its 1/N slice of each parameter, its
gradient and its AdamW moments. Before a layer runs forward (and again in backward) its
full weights are all-gathered; after backward its gradients are reduce-scattered, so
each rank ends the step with the averaged gradient of its own slice. The optimizer then
updates slices: memory per rank for parameters, gradients and moments falls from 16
bytes per parameter (DDP, fp32 AdamW) to 16/N, paid for with more communication.

What is sharded: each layer of every `nn.ModuleList` in the model (the transformer
blocks) is one unit, and the root holds the rest (embedding, final norm, head). Frozen
parameters (a LoRA base) are sharded too and never get gradients. The model file knows
none of this: sharding wraps a finished model from outside, like DDP.

Writing the plain `model.safetensors` (or an adapter) needs the full tensors on the main
rank: `full_view` gathers them into a copy of the model made on the meta device before
sharding (no memory until a checkpoint fills it).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def shard_model(model: nn.Module) -> nn.Module:
    """Shard `model` in place over the default process group; returns it."""
    from torch.distributed.fsdp import fully_shard

    for layers in [m for m in model.modules() if isinstance(m, nn.ModuleList)]:
        for layer in layers:
            if any(p.numel() for p in layer.parameters()):
                fully_shard(layer)
    fully_shard(model)
    return model


def meta_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` whose parameters and buffers live on the meta device (no storage);
    tied parameters stay tied."""
    memo: dict[int, object] = {}
    for p in model.parameters():
        memo[id(p)] = nn.Parameter(torch.empty_like(p, device="meta"), p.requires_grad)
    for b in model.buffers():
        memo[id(b)] = torch.empty_like(b, device="meta")
    return copy.deepcopy(model, memo)


def full_view(shadow: nn.Module, sharded: nn.Module) -> nn.Module | None:
    """On the main rank, a copy of `shadow` holding the full tensors of `sharded` (on CPU);
    None on the other ranks. Every rank must call it (it all-gathers)."""
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    full = get_model_state_dict(sharded, options=options)
    if dist.is_initialized() and dist.get_rank() != 0:
        return None
    view = copy.deepcopy(shadow)
    made: dict[int, nn.Parameter | torch.Tensor] = {}
    for prefix, module in view.named_modules(remove_duplicate=False):
        for kind in ("_parameters", "_buffers"):
            slots = getattr(module, kind)
            for name, old in list(slots.items()):
                key = f"{prefix}.{name}" if prefix else name
                if old is None or key not in full:
                    continue
                if id(old) not in made:  # tied: one tensor for every name it goes by
                    value = full[key]
                    made[id(old)] = nn.Parameter(value, old.requires_grad) \
                        if kind == "_parameters" else value
                slots[name] = made[id(old)]
    return view


def full_value(value: torch.Tensor) -> torch.Tensor:
    """A DTensor's full value (e.g. the global gradient norm), a plain tensor as it is."""
    full = getattr(value, "full_tensor", None)
    return full() if full is not None else value
