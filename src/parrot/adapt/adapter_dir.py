"""An adapter on disk, whatever its method: a directory with `adapter.safetensors` (the
trained tensors only) and `adapter_config.json` ({"method": "lora" | "soft_prompt", ...,
plus what the caller adds, such as the base model's name}).

LoRA (`lora.py`) and soft prompts (`soft_prompt.py`) both read and write through here,
and `lora.load_adapter` picks the method from the config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from parrot.errors import ParrotError
from parrot.utils.atomic import atomic_path, atomic_write_json

ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


def is_adapter_dir(path: str | Path) -> bool:
    """True when `path` holds a saved adapter (LoRA or soft prompt)."""
    path = Path(path)
    return (path / ADAPTER_CONFIG).is_file() and (path / ADAPTER_WEIGHTS).is_file()


def read_adapter_config(directory: str | Path) -> dict[str, Any]:
    """The adapter's config; ParrotError if `directory` has none or it is not JSON."""
    path = Path(directory) / ADAPTER_CONFIG
    if not path.is_file():
        raise ParrotError(f"{directory} has no {ADAPTER_CONFIG}; pass a directory written by "
                          "parrot finetune.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ParrotError(f"{path} is not readable JSON ({err}); run parrot finetune "
                          "again to rewrite it.") from None


def read_adapter_tensors(directory: str | Path) -> dict[str, torch.Tensor]:
    """The tensors in `directory/adapter.safetensors`."""
    from parrot.utils.safetensors_io import read_tensors

    return read_tensors(Path(directory) / ADAPTER_WEIGHTS)


def save_adapter_dir(directory: str | Path, tensors: dict[str, torch.Tensor],
                     config: dict[str, Any]) -> None:
    """Write `tensors` and `config` into `directory` (created if needed), each atomically."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / ADAPTER_WEIGHTS) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
    atomic_write_json(directory / ADAPTER_CONFIG, config)
