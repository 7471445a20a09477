"""The run directory: what a training run leaves behind and every later stage reads.

    RUN_DIR/
      config.json        {"model": ModelConfig, "train": TrainConfig, "data": DataSpec, ...}
      tokenizer.json     the tokenizer the token ids refer to (Hugging Face format)
      model.safetensors  the latest weights (tied tensors stored once)
      metrics.jsonl      one JSON object per logged step or evaluation
      loss.png           the loss curve, redrawn during the run
      checkpoint.pt      optimizer, RNG and data state for --resume
      data/train.npy, data/val.npy   the token shards
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from parrot.errors import ParrotError
from parrot.utils.atomic import atomic_path, atomic_write_json, atomic_write_text


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer.json"

    @property
    def weights(self) -> Path:
        return self.root / "model.safetensors"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def plot(self) -> Path:
        return self.root / "loss.png"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint.pt"

    @property
    def data(self) -> Path:
        return self.root / "data"


REWARD_WEIGHTS = "reward.safetensors"  # a reward model's trained tensors (training/reward.py)


def is_reward_dir(path: str | Path) -> bool:
    """True when `path` holds a reward model (config.json and reward.safetensors)."""
    return RunDir(Path(path)).config.is_file() and (Path(path) / REWARD_WEIGHTS).is_file()


def is_run_dir(path: str | Path) -> bool:
    """True when `path` holds a config with a model section and saved weights."""
    run = RunDir(Path(path))
    if not (run.config.is_file() and run.weights.is_file()):
        return False
    try:
        return "model" in json.loads(run.config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def require_run_dir(path: str | Path) -> RunDir:
    """The RunDir at `path`, or a ParrotError saying why it is not one."""
    path = Path(path)
    if not path.is_dir():
        raise ParrotError(f"{path} is not a directory; pass a run directory made by parrot train.")
    if not is_run_dir(path):
        raise ParrotError(
            f"{path} is not a run directory (it needs config.json with a model section and "
            "model.safetensors); pass a directory made by parrot train."
        )
    return RunDir(path)


def read_config(path: str | Path) -> dict[str, Any]:
    return json.loads(RunDir(Path(path)).config.read_text(encoding="utf-8"))


def write_config(path: str | Path, config: dict[str, Any]) -> None:
    atomic_write_json(RunDir(Path(path)).config, config)


def save_weights(path: str | Path, model: nn.Module) -> None:
    """Write model.safetensors atomically; tensors shared by tying are stored once."""
    from safetensors.torch import save_model

    with atomic_path(RunDir(Path(path)).weights) as tmp:
        save_model(model, str(tmp))


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple:
    """(model in eval mode, tokenizer, model_config) from a run directory."""
    from safetensors.torch import load_model as load_weights

    from parrot.model import ModelConfig, VisionConfig, VisionLanguageModel, build_model
    from parrot.tokenizer import Tokenizer

    run = require_run_dir(path)
    saved = read_config(run.root)
    model_config = ModelConfig.from_dict(saved["model"])
    if "vision" in saved:  # a vision-language run: the language model plus its image side
        model = VisionLanguageModel(model_config, VisionConfig.from_dict(saved["vision"]))
    else:  # a Transformer, or an EncoderDecoder for seq2seq runs
        model = build_model(model_config)
    load_weights(model, str(run.weights), device="cpu")
    if not run.tokenizer.is_file():
        raise ParrotError(f"{run.root} has no tokenizer.json; the run directory is incomplete.")
    tokenizer = Tokenizer.load(run.tokenizer)
    return model.to(device).eval(), tokenizer, model_config


def append_metrics(path: str | Path, row: dict[str, Any]) -> None:
    """Append one JSON line to metrics.jsonl (flushed, so a killed run keeps what it logged)."""
    with open(RunDir(Path(path)).metrics, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Every complete line of metrics.jsonl (a line cut short by a kill is skipped)."""
    file = RunDir(Path(path)).metrics
    if not file.is_file():
        return []
    rows = []
    for line in file.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def truncate_metrics(path: str | Path, last_step: int) -> None:
    """Drop rows logged after `last_step` (a resumed run logs those steps again)."""
    rows = [r for r in read_metrics(path) if r.get("step", 0) <= last_step]
    atomic_write_text(RunDir(Path(path)).metrics, "".join(json.dumps(r) + "\n" for r in rows))
