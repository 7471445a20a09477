"""Checkpoints: everything needed to continue a run as if it had never stopped.

A checkpoint holds the model and optimizer tensors, the step, every random generator
(Python, NumPy, torch CPU and CUDA) and the data sampler's generator. Three guarantees:

- Loading one runs no code. Everything in it is a tensor, a number, a string or a
  container of those (NumPy's generator state is stored as a tensor), so it is read with
  `torch.load(weights_only=True)`, whose unpickler refuses any other object; a planted
  pickle is refused with one sentence.
- A damaged file is detected. The state carries a SHA-256 digest of its own contents
  (`state_digest`); a truncated file fails to open and a flipped byte fails the digest,
  both as a ParrotError, never a traceback.
- Writing one never loses the previous one. It is written to a temporary file and
  renamed, so `kill -9` mid-write or a full disk leaves the previous checkpoint intact;
  a failed write stops the run with one sentence.
"""

from __future__ import annotations

import hashlib
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from parrot.errors import ParrotError
from parrot.utils.atomic import atomic_path

FORMAT = 2  # 1: the pickled NumPy state of earlier versions, read with weights_only=False


def rng_state() -> dict[str, Any]:
    """Snapshot of every global random generator a training step may touch, in types
    `torch.load(weights_only=True)` accepts (NumPy's key array as an int64 tensor)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                  float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def state_digest(state: Any) -> str:
    """SHA-256 over a deterministic walk of `state`: for each tensor its dtype, shape and
    bytes, for each other leaf its repr, for dicts their keys in order."""
    digest = hashlib.sha256()
    _feed(digest, state)
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        flat = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"T{flat.dtype}{tuple(value.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    elif isinstance(value, dict):
        digest.update(f"D{len(value)}".encode())
        for key, item in value.items():
            digest.update(repr(key).encode())
            _feed(digest, item)
    elif isinstance(value, (list, tuple)):
        digest.update(f"L{len(value)}".encode())
        for item in value:
            _feed(digest, item)
    else:
        digest.update(repr(value).encode())


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
        "format": FORMAT,
        "step": step,
        "model": trainable_state(model),
        "optimizer": optimizer.state_dict(),
        "sampler": sampler_state,
        "rng": rng_state(),
        "extra": extra or {},
    }
    state["sha256"] = state_digest(state)
    write_safely(path, lambda tmp: torch.save(state, tmp))


def write_safely(path: str | Path, write: Any) -> None:
    """`write(tmp)` then rename onto `path`; an OSError (full disk, lost mount) becomes a
    ParrotError and leaves whatever `path` held before untouched."""
    try:
        with atomic_path(path) as tmp:
            write(tmp)
    except OSError as err:
        reason = err.strerror or str(err)
        raise ParrotError(f"Could not write {path} ({reason}); the previous checkpoint is "
                          "intact: free some space and continue with --resume.") from None


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's state, read without running code and checked against its digest."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ParrotError(f"{path} holds objects other than tensors and numbers, which parrot "
                          "refuses to load because unpickling them could run code; resume "
                          "only checkpoints parrot wrote.") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError):
        raise ParrotError(f"{path} is truncated or corrupt (it cannot be read as a "
                          "checkpoint); restart the run or restore the file.") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or "sha256" not in state:
        raise ParrotError(f"{path} is not a checkpoint this version of parrot wrote; "
                          "restart the run without --resume.")
    expected = state.pop("sha256")
    if state_digest(state) != expected:
        raise ParrotError(f"{path} is corrupt (its checksum does not match its contents); "
                          "restart the run or restore the file.")
    return state


def load_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Restore model and optimizer in place; return the rest (step, sampler, rng, extra).

    The caller has checked that the checkpoint exists, and restores the RNG state last,
    after anything that may still draw numbers.
    """
    state = read_checkpoint(path)
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
