"""Checkpoints: everything needed to continue a run as if it had never stopped.

A checkpoint holds the model and optimizer tensors, the step, every random generator
(Python, NumPy, torch CPU and CUDA) and the data sampler's generator. It is written to a
temporary file and renamed, so a run killed with `kill -9` mid-write leaves the previous
checkpoint intact.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from parrot.errors import ParrotError
from parrot.utils.atomic import atomic_path


def rng_state() -> dict[str, Any]:
    """Snapshot of every global random generator a training step may touch."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    sampler_state: dict,
    extra: dict | None = None,
) -> None:
    """Atomically write the full training state after `step` optimizer steps."""
    state = {
        "step": step,
        "model": trainable_state(model),
        "optimizer": optimizer.state_dict(),
        "sampler": sampler_state,
        "rng": rng_state(),
        "extra": extra or {},
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Restore model and optimizer in place; return the rest (step, sampler, rng, extra).

    The caller has checked that the checkpoint exists, and restores the RNG state last,
    after anything that may still draw numbers.
    """
    state = torch.load(path, map_location="cpu", weights_only=False)
    missing, unexpected = model.load_state_dict(state["model"], strict=False)
    if unexpected or set(missing) - _frozen_names(model):
        raise ParrotError(f"The checkpoint at {path} does not fit this model (parameters "
                          "differ); resume it with the settings it was started with.")
    optimizer.load_state_dict(state["optimizer"])
    return state


def _frozen_names(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters(remove_duplicate=False) if not p.requires_grad}


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model part of a checkpoint: its state_dict without frozen parameters.

    Pretraining trains everything, so this is the whole state_dict. A frozen base (LoRA,
    soft prompt, QLoRA) is reloaded from its own files on resume, so its checkpoint keeps
    only what trains (plus buffers) and stays adapter-sized.
    """
    frozen = _frozen_names(model)
    return {k: v for k, v in model.state_dict().items() if k not in frozen}
