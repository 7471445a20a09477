"""Sharded checkpoints (`torch.distributed.checkpoint`) that resume on any number of ranks.

A run trained with `train.strategy=fsdp` checkpoints into a folder:

    checkpoint.dcp/
      latest                 {"dir": "step-00000040"}  (rewritten atomically, last)
      step-00000040/
        __0_0.distcp ...     each rank's slices of the model and AdamW tensors
        .metadata            where every slice of every tensor lives
        state.pt             step, sampler, RNG and counters (main rank)
        manifest.json        SHA-256 and size of every file above

DCP stores each tensor as slices with their global offsets, so N ranks can write and M
ranks read (2 → 1, 1 → 2): each reader asks for the slices its own shards cover. A step
folder is complete before `latest` points at it and older ones are deleted, so `kill -9`
or a full disk mid-write leaves the previous checkpoint in force.

No file runs code. DCP reads `.metadata` with `pickle.load` and non-tensor entries with
`torch.load(weights_only=False)`; here `.metadata` goes through an unpickler that admits
only DCP's own record classes, non-tensor entries load with `weights_only=True`, and the
manifest's checksums are verified before either is read.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint import DefaultLoadPlanner, FileSystemReader
from torch.distributed.checkpoint._traverse import set_element
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_state_dict,
    set_state_dict,
)

from parrot.errors import ParrotError
from parrot.training.checkpoint import read_checkpoint, rng_state, state_digest, write_safely
from parrot.utils.atomic import atomic_write_json

_DCP = "torch.distributed.checkpoint"
SAFE_GLOBALS = {
    *((f"{_DCP}.metadata", n) for n in (
        "Metadata", "TensorStorageMetadata", "ChunkStorageMetadata", "TensorProperties",
        "BytesStorageMetadata", "StorageMeta", "MetadataIndex", "_MEM_FORMAT_ENCODING")),
    (f"{_DCP}.filesystem", "_StorageInfo"),
    ("torch", "Size"), ("collections", "OrderedDict"), ("pathlib", "PosixPath"),
    ("torch.serialization", "_get_layout"),  # maps a layout's name to torch.strided etc.
}


class _MetadataUnpickler(pickle.Unpickler):
    """Unpickles DCP's `.metadata`: its record classes, torch dtypes and layouts only."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in SAFE_GLOBALS:
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None),
                                            (torch.dtype, torch.layout, torch.memory_format)):
            return getattr(torch, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in checkpoint metadata")


def checkpoint_dir(root: Path) -> Path:
    return Path(root) / "checkpoint.dcp"


def has_sharded(root: Path) -> bool:
    return (checkpoint_dir(root) / "latest").is_file()


def _state_dicts(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """What DCP saves and loads: trainable model tensors and the optimizer, by name."""
    model_state, optim_state = get_state_dict(model, optimizer)
    frozen = {n for n, p in model.named_parameters(remove_duplicate=False) if not p.requires_grad}
    return {"model": {k: v for k, v in model_state.items() if k not in frozen},
            "optim": optim_state}


def save_sharded(root: Path, model: nn.Module, optimizer: torch.optim.Optimizer, step: int,
                 sampler_state: dict, extra: dict, is_main: bool) -> None:
    """Every rank writes its slices into a new step folder; the main rank adds state.pt and
    the manifest, points `latest` at it and deletes older folders."""
    base = checkpoint_dir(root)
    folder = base / f"step-{step:08d}"
    try:
        dcp.save(_state_dicts(model, optimizer), checkpoint_id=str(folder))
        if is_main:
            state = {"format": 2, "step": step, "sampler": sampler_state, "rng": rng_state(),
                     "extra": extra}
            state["sha256"] = state_digest(state)
            write_safely(folder / "state.pt", lambda tmp: torch.save(state, tmp))
            atomic_write_json(folder / "manifest.json", _manifest(folder))
            atomic_write_json(base / "latest", {"dir": folder.name})
    except OSError as err:
        raise ParrotError(f"Could not write the checkpoint into {folder} ({err.strerror or err});"
                          " the previous checkpoint is intact: free some space and continue "
                          "with --resume.") from None
    if dist.is_initialized():
        dist.barrier()
    if is_main:
        for old in base.glob("step-*"):
            if old.name != folder.name:
                shutil.rmtree(old, ignore_errors=True)


def _manifest(folder: Path) -> dict[str, dict[str, Any]]:
    return {p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)}
            for p in sorted(folder.iterdir()) if p.is_file() and p.name != "manifest.json"}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def latest_folder(root: Path) -> Path:
    """The step folder `latest` names, with every file checked against the manifest."""
    base = checkpoint_dir(root)
    try:
        folder = base / json.loads((base / "latest").read_text())["dir"]
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError, KeyError, TypeError):
        raise ParrotError(f"The sharded checkpoint in {base} is incomplete or corrupt (its "
                          "manifest cannot be read); restart the run.") from None
    for name, entry in manifest.items():
        path = folder / Path(name).name
        if not path.is_file() or path.stat().st_size != entry["bytes"] or \
                _sha256(path) != entry["sha256"]:
            raise ParrotError(f"{path} is truncated or corrupt (its checksum does not match "
                              "the manifest); restart the run or restore the file.")
    return folder


def load_sharded(root: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Load the latest sharded checkpoint into this rank's model and optimizer (any number
    of ranks); return step, sampler, rng and extra as `checkpoint.load_checkpoint` does."""
    folder = latest_folder(root)
    state = _state_dicts(model, optimizer)
    try:
        dcp.load(state, storage_reader=SafeReader(str(folder)), planner=SafePlanner())
    except (pickle.UnpicklingError, RuntimeError, KeyError, ValueError) as err:
        raise ParrotError(f"The checkpoint in {folder} does not fit this run or holds objects "
                          f"parrot refuses to load ({str(err).splitlines()[0][:200]}); resume "
                          "with the settings it was started with.") from None
    set_state_dict(model, optimizer, model_state_dict=state["model"],
                   optim_state_dict=state["optim"], options=StateDictOptions(strict=False))
    return read_checkpoint(folder / "state.pt")


class SafeReader(FileSystemReader):
    """FileSystemReader whose `.metadata` goes through `_MetadataUnpickler`."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
        from torch.distributed.checkpoint.metadata import StorageMeta

        with open(self._get_metadata_path(kwargs.get("rank")), "rb") as f:
            metadata = _MetadataUnpickler(f).load()
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


class SafePlanner(DefaultLoadPlanner):
    """DefaultLoadPlanner that reads non-tensor entries with weights_only=True."""

    def load_bytes(self, read_item: Any, value: io.BytesIO) -> None:
        obj = torch.load(value, weights_only=True)
        if self.flatten_state_dict:
            set_element(self.original_state_dict, self.mappings[read_item.dest_index.fqn], obj)
        else:
            self.state_dict[read_item.dest_index.fqn] = obj
