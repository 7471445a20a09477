"""Training and data configuration: frozen, validated, serialised into every run directory,
and `override`, the one parser of `--set section.field=value` for every training command."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Self

from parrot.errors import ParrotError


class Section:
    """What TrainConfig and DataSpec share; `section` names one in config.json and messages."""

    section = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Self:
        """Build from `d`, with a ParrotError naming any unknown key."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ParrotError(f"Unknown {cls.section} config key {unknown[0]!r}; "
                              f"valid keys: {', '.join(sorted(names))}.")
        return cls(**d)

    def replace(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class TrainConfig(Section):
    """How to optimise. `batch_size` is the global number of windows per micro-step
    (split across data-parallel ranks); one optimizer step sees batch_size * grad_accum windows."""

    section = "train"
    steps: int = 2000
    batch_size: int = 12
    grad_accum: int = 1
    seq_len: int | None = None  # window length; None = the model's context_length
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0 disables clipping (the norm is still reported)
    eval_every: int = 100
    eval_iters: int = 20
    eval_batch_size: int | None = None  # None = batch_size; fix it to compare runs on one set
    checkpoint_every: int = 500
    log_every: int = 10
    seed: int = 1337
    bf16: bool = False
    compile: bool = False
    objective: str = "next_token"
    device: str = "cpu"
    threads: int | None = None  # torch intra-op threads; None leaves torch's default
    # How several processes (torchrun) share the work: "ddp" copies the model to every rank
    # and averages gradients; "fsdp" shards parameters, gradients and AdamW moments.
    strategy: str = "ddp"

    def __post_init__(self) -> None:
        _check_types(self)
        for name in ("steps", "batch_size", "grad_accum", "eval_every", "eval_iters",
                     "checkpoint_every", "log_every", "seq_len", "eval_batch_size", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:  # None: the optional ones left unset
                raise ParrotError(f"train.{name} must be at least 1, got {value}.")
        if not 0 <= self.min_lr <= self.lr:
            raise ParrotError(f"train.min_lr must lie in [0, lr={self.lr}], got {self.min_lr}.")
        if self.warmup < 0 or self.grad_clip < 0 or self.weight_decay < 0:
            raise ParrotError("train.warmup, train.grad_clip and train.weight_decay must be >= 0.")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ParrotError("train.beta1 and train.beta2 must lie in [0, 1).")
        if self.strategy not in ("ddp", "fsdp"):
            raise ParrotError(f"train.strategy must be ddp or fsdp, got {self.strategy!r}.")
        if self.strategy == "fsdp" and self.compile:
            raise ParrotError("train.compile does not combine with train.strategy=fsdp here; "
                              "turn one of them off.")


@dataclass(frozen=True)
class DataSpec(Section):
    """Where the text comes from and how it becomes train/validation token ids.

    tokenizer: "bytes" (256 byte ids, no training) or "bpe" (trained on the train split).
    split: "documents" (the last val_fraction of documents is validation) or "chars" (the
    last val_fraction of the concatenated characters: the customary tinyshakespeare split).
    """

    section = "data"

    tokenizer: Literal["bytes", "bpe"] = "bpe"
    vocab_size: int = 512
    split: Literal["documents", "chars"] = "documents"
    val_fraction: float = 0.1
    needs_path: bool = False  # the preset names a specific file the user must pass with --data

    def __post_init__(self) -> None:
        _check_types(self)
        if self.tokenizer not in ("bytes", "bpe"):
            raise ParrotError(f"data.tokenizer must be 'bytes' or 'bpe', got {self.tokenizer!r}.")
        if self.split not in ("documents", "chars"):
            raise ParrotError(f"data.split must be 'documents' or 'chars', got {self.split!r}.")
        if not 0 < self.val_fraction < 1:
            raise ParrotError(f"data.val_fraction must lie in (0, 1), got {self.val_fraction}.")
        if self.vocab_size < 256:
            raise ParrotError(f"data.vocab_size must be at least 256, got {self.vocab_size}.")


def field_types(cls: type) -> dict[str, Any]:
    """Resolved type hints of a dataclass's fields."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _allowed(hint: Any) -> tuple:
    """The Python types a value annotated `hint` may have (bool is not an int here)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return tuple(t for a in typing.get_args(hint) for t in _allowed(a))
    if origin is Literal:
        return tuple({type(a) for a in typing.get_args(hint)})
    if hint is float:
        return (float, int)
    return (hint,)


def _check_types(obj: Any) -> None:
    for name, hint in field_types(type(obj)).items():
        value, allowed = getattr(obj, name), _allowed(hint)
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise ParrotError(f"{obj.section}.{name} must be of type {_type_name(hint)}, got {value!r}.")


def _type_name(hint: Any) -> str:
    return " or ".join(sorted({t.__name__ for t in _allowed(hint)}))


def parse_value(text: str, hint: Any, key: str) -> Any:
    """Parse the command-line string `text` into a value of annotated type `hint`."""
    allowed = _allowed(hint)
    if type(None) in allowed and text.lower() in ("none", "null"):
        return None
    for t in allowed:
        if t is bool:
            if text.lower() in ("true", "1", "yes", "on"):
                return True
            if text.lower() in ("false", "0", "no", "off"):
                return False
        elif t in (int, float):
            try:
                return t(text)
            except ValueError:
                pass
        elif t is str:
            return text
    raise ParrotError(f"--set {key}={text}: expected a value of type {_type_name(hint)}.")


def override(sections: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """The one `--set` parser: `section.field=value` (or an unambiguous `field=value`)
    strings applied to named config dataclasses, e.g. {"model": ..., "train": ...};
    ParrotError naming the valid keys for an unknown one."""
    changes: dict[str, dict[str, Any]] = {name: {} for name in sections}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ParrotError(f"--set {item!r} must look like key=value, e.g. train.lr=3e-3.")
        section, name = _resolve_key(key.strip(), sections)
        hint = field_types(type(sections[section]))[name]
        changes[section][name] = parse_value(text.strip(), hint, key)
    return {s: _replace(obj, changes[s], s) for s, obj in sections.items()}


def _resolve_key(key: str, parts: dict[str, Any]) -> tuple[str, str]:
    """('train', 'lr') for 'train.lr' or for 'lr' when only one section has that field."""
    fields = {s: {f.name for f in dataclasses.fields(obj)} for s, obj in parts.items()}
    if "." in key:
        section, name = key.split(".", 1)
        if section in fields and name in fields[section]:
            return section, name
    else:
        owners = [s for s in fields if key in fields[s]]
        if len(owners) == 1:
            return owners[0], key
        if len(owners) > 1:
            raise ParrotError(f"--set {key} is ambiguous; write one of: "
                              f"{', '.join(f'{s}.{key}' for s in owners)}.")
    valid = ", ".join(f"{s}.{n}" for s in fields for n in sorted(fields[s]))
    raise ParrotError(f"Unknown config key {key!r}; valid keys: {valid}.")


def _replace(obj: Any, changes: dict[str, Any], section: str) -> Any:
    if not changes:
        return obj
    try:
        return dataclasses.replace(obj, **changes)
    except (TypeError, ValueError) as err:
        raise ParrotError(f"Invalid {section} setting: {err}.") from err
