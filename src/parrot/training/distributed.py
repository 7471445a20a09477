"""Data-parallel training through torch.distributed (what `torchrun` launches).

Two strategies (`train.strategy`): "ddp" (below) and "fsdp" (parameters, gradients and
optimizer state sharded across ranks: `parrot.training.fsdp`).

torchrun starts one process per worker and sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR
and MASTER_PORT. Each process builds the same model, DDP averages gradients across them
during backward, every rank trains on its own slice of each global batch, and only rank 0
writes files. On CPU the backend is gloo; on CUDA it is nccl with one GPU per process
(cuda:LOCAL_RANK). Without those variables everything runs as a single process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def dist_info_from_env(env: Mapping[str, str] | None = None) -> DistInfo:
    """Read torchrun's rank variables (absent → a single process)."""
    env = os.environ if env is None else env
    return DistInfo(
        rank=int(env.get("RANK", 0)),
        world_size=int(env.get("WORLD_SIZE", 1)),
        local_rank=int(env.get("LOCAL_RANK", 0)),
    )


def init_distributed(info: DistInfo) -> None:
    """Join the process group when running under torchrun (gloo for CPU tensors, nccl for
    CUDA tensors when a GPU is present)."""
    if not info.enabled or dist.is_initialized():
        return
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)


def rank_device(info: DistInfo, device: str) -> str:
    """One GPU per process: cuda:LOCAL_RANK when training on CUDA with several ranks."""
    if info.enabled and device.startswith("cuda"):
        device = f"cuda:{info.local_rank}"
        torch.cuda.set_device(device)
    return device


def wrap_model(model: nn.Module, info: DistInfo, device: str, strategy: str = "ddp") -> nn.Module:
    """DDP wrapper that averages gradients across ranks, or (strategy "fsdp") the model
    sharded in place by `fsdp.shard_model`; the model itself when alone."""
    if not info.enabled:
        return model
    if strategy == "fsdp":
        from parrot.training.fsdp import shard_model

        return shard_model(model)
    from torch.nn.parallel import DistributedDataParallel

    ids = [torch.device(device).index] if device.startswith("cuda") else None
    return DistributedDataParallel(model, device_ids=ids)


def gradient_sync(model: nn.Module, info: DistInfo,
                  last: bool) -> contextlib.AbstractContextManager:
    """Gradient averaging only on the last micro-batch of an optimizer step: DDP's
    no_sync() before it, FSDP's set_requires_gradient_sync(last)."""
    if not info.enabled:
        return contextlib.nullcontext()
    if hasattr(model, "set_requires_gradient_sync"):
        model.set_requires_gradient_sync(last)
        return contextlib.nullcontext()
    return contextlib.nullcontext() if last else model.no_sync()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def mean_across_ranks(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The average of a scalar tensor over all ranks (itself when alone)."""
    if not info.enabled:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / info.world_size


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
