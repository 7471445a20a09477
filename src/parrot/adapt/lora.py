"""LoRA: a low-rank update added to chosen Linear layers, applied from outside the model.

    y = W x + b + (alpha / r) * B (A dropout(x))        A: (r, in), B: (out, r)

A starts random (Kaiming-uniform, as in the LoRA paper's reference code and `peft`) and
B starts at zero, so at initialisation the adapted model computes exactly what the base
does. Only A and B train; the base weights are frozen. Merging folds the update into W
(W <- W + (alpha/r) B A), after which the adapter costs nothing at inference.

An adapter is saved as `adapter.safetensors` (only A and B, keyed by module name) plus
`adapter_config.json` (method, rank, alpha, dropout, targets and the base it belongs to);
see `adapter_dir.py`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from parrot.adapt.adapter_dir import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    is_adapter_dir,
    read_adapter_config,
    read_adapter_tensors,
    save_adapter_dir,
)
from parrot.adapt.qlora import Int8Linear, quantize_linears
from parrot.adapt.soft_prompt import load_soft_prompt
from parrot.adapt.swap import replace_modules
from parrot.errors import ParrotError

# Short names users type (`--targets q,v`) for the model's projection modules.
SHORT_TARGETS = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj",
                 "gate": "gate_proj", "up": "up_proj", "down": "down_proj"}
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraConfig:
    """Which layers get an adapter and its size: scale = alpha / rank."""

    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = ("q_proj", "v_proj")
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank <= 0:
            raise ParrotError(f"LoRA rank must be a positive integer, got {self.rank!r}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ParrotError(f"LoRA dropout must lie in [0, 1), got {self.dropout}.")
        if not self.targets:
            raise ParrotError("LoRA needs at least one target layer, e.g. --targets q,v.")
        object.__setattr__(self, "targets", normalize_targets(self.targets))

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def to_dict(self) -> dict[str, Any]:
        return {"method": "lora", **asdict(self), "targets": list(self.targets)}


def normalize_targets(targets: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """'q,v' or ('q', 'v_proj') or 'all' -> ('q_proj', 'v_proj') (module-name endings)."""
    if isinstance(targets, str):
        targets = targets.split(",")
    out: list[str] = []
    for t in (t.strip() for t in targets):
        names = ALL_LINEAR if t == "all" else (SHORT_TARGETS.get(t, t),)
        out += [n for n in names if n and n not in out]
    return tuple(out)


def lora_delta(a: torch.Tensor, b: torch.Tensor, scale: float) -> torch.Tensor:
    """The weight update the adapter adds: scale * B @ A, shape (out, in)."""
    return scale * (b @ a)


class LoraLinear(nn.Module):
    """A frozen nn.Linear (or int8 Int8Linear, QLoRA) plus a trainable low-rank path."""

    def __init__(self, base: nn.Linear | Int8Linear, rank: int, alpha: float,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.base = base
        self.scale = alpha / rank
        factory = {"dtype": torch.float32, "device": next(base.parameters()).device}
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, **factory))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, **factory))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.merged:
            return y
        h = self.dropout(x).to(self.lora_A.dtype) @ self.lora_A.T           # (..., r)
        return y + (self.scale * (h @ self.lora_B.T)).to(y.dtype)         # (..., out)

    @torch.no_grad()
    def set_merged(self, merged: bool) -> None:
        """Merge: W <- W + scale * B A, an int8 base becoming a float one first. Unmerge:
        W <- W - scale * B A, back to the base weights (up to rounding). Idempotent."""
        if merged and isinstance(self.base, Int8Linear):
            self.base = self.base.to_linear()
        if self.merged != merged:
            delta = lora_delta(self.lora_A, self.lora_B, self.scale)
            self.base.weight.add_(delta.to(self.base.weight.dtype), alpha=1 if merged else -1)
            self.merged = merged


LINEAR = (nn.Linear, Int8Linear)  # layers an adapter can wrap


def _matches(name: str, targets: tuple[str, ...]) -> bool:
    return any(name == t or name.endswith("." + t) for t in targets)


def apply_lora(model: nn.Module, targets: Any = ("q_proj", "v_proj"), rank: int = 8,
               alpha: float = 16.0, dropout: float = 0.0) -> list[str]:
    """Freeze `model` and wrap every nn.Linear whose name ends in a target; return the names.

    Targets are module-name endings (`q_proj`, `blocks.0.mlp.up_proj`) or short names
    (`q`, `k`, `v`, `o`, `gate`, `up`, `down`, `all`).
    """
    config = LoraConfig(rank, alpha, normalize_targets(targets), dropout)

    def targeted(name: str, module: nn.Module) -> bool:
        return isinstance(module, LINEAR) and _matches(name, config.targets)

    if not any(targeted(n, m) for n, m in model.named_modules()):
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                         if isinstance(m, LINEAR)})
        raise ParrotError(f"LoRA targets {', '.join(config.targets)} match no Linear layer of "
                          f"this model; choose from: {', '.join(linear)}.")
    model.requires_grad_(False)
    names = replace_modules(model, targeted, lambda _, module: LoraLinear(
        module, config.rank, config.alpha, config.dropout))
    model.lora_config = config  # read back by save_adapter
    return names


def lora_layers(model: nn.Module) -> dict[str, LoraLinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, LoraLinear)}


def trainable_parameters(model: nn.Module) -> int:
    """Parameters that receive gradients (`parameters()` yields a shared tensor once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight and put the plain nn.Linear back (in place)."""
    def merged_base(_: str, layer: LoraLinear) -> nn.Module:
        layer.set_merged(True)
        return layer.base

    replace_modules(model, lambda _, m: isinstance(m, LoraLinear), merged_base)
    if hasattr(model, "lora_config"):
        del model.lora_config
    return model


def set_merged(model: nn.Module, merged: bool) -> None:
    """Merge (True) or unmerge (False) every adapter, keeping the wrappers."""
    for layer in lora_layers(model).values():
        layer.set_merged(merged)


def save_adapter(model: nn.Module, directory: str | Path, extra: dict | None = None) -> None:
    """Write adapter.safetensors and adapter_config.json (plus `extra`, e.g. the base)."""
    config = getattr(model, "lora_config", None)
    if config is None:
        raise ParrotError("This model has no LoRA adapter to save; call apply_lora first.")
    tensors = {f"{name}.lora_{x}": getattr(layer, f"lora_{x}")  # <module>.lora_A, .lora_B
               for name, layer in lora_layers(model).items() for x in "AB"}
    save_adapter_dir(directory, tensors, {**config.to_dict(), **(extra or {})})


def load_lora(model: nn.Module, directory: str | Path) -> nn.Module:
    """Wrap `model` with the LoRA adapter saved in `directory` and load its A and B."""
    cfg = read_adapter_config(directory)
    if cfg.get("quantize") == "int8":  # trained on an int8 base: run on the same weights
        quantize_linears(model)
    apply_lora(model, tuple(cfg["targets"]), int(cfg["rank"]), float(cfg["alpha"]),
               float(cfg.get("dropout", 0.0)))
    state = read_adapter_tensors(directory)
    layers = lora_layers(model)
    expected = {f"{n}.lora_{x}" for n in layers for x in "AB"}
    if set(state) != expected:
        raise ParrotError(f"The adapter in {directory} does not fit this base model "
                          "(its layer names differ); load it on the base it was trained on.")
    with torch.no_grad():
        for key, tensor in state.items():
            name, _, part = key.rpartition(".")
            target = getattr(layers[name], part)
            if target.shape != tensor.shape:
                raise ParrotError(f"The adapter in {directory} has {key} of shape "
                                  f"{tuple(tensor.shape)}, but this base needs "
                                  f"{tuple(target.shape)}; load it on its own base model.")
            target.copy_(tensor)
    return model


def load_adapter(model: nn.Module, directory: str | Path) -> nn.Module:
    """`model` with the adapter saved in `directory` (LoRA wraps in place; a soft prompt
    returns a wrapper)."""
    if not is_adapter_dir(directory):
        raise ParrotError(f"{directory} holds no adapter ({ADAPTER_CONFIG} and "
                          f"{ADAPTER_WEIGHTS}); pass a directory written by parrot finetune.")
    method = read_adapter_config(directory).get("method")
    if method == "lora":
        return load_lora(model, directory)
    if method == "soft_prompt":
        return load_soft_prompt(model, directory)
    raise ParrotError(f"{directory}/{ADAPTER_CONFIG} names an unknown method {method!r}; "
                      "expected 'lora' or 'soft_prompt'.")
