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
    """True when `path` holds a config with a model (or rnn) section and saved weights."""
    run = RunDir(Path(path))
    if not (run.config.is_file() and run.weights.is_file()):
        return False
    try:
        config = json.loads(run.config.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    # "rnn": the GRU encoder-decoders of the RNN history lesson
    return isinstance(config, dict) and (isinstance(config.get("model"), dict)
                                         or isinstance(config.get("rnn"), dict))


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
    """The run's config.json as a dict; ParrotError when it is unreadable or not an object."""
    file = RunDir(Path(path)).config
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ParrotError(f"{file} is not readable JSON ({str(err)[:120]}); the run "
                          "directory is damaged.") from None
    if not isinstance(config, dict):
        raise ParrotError(f"{file} must hold a JSON object; the run directory is damaged.")
    return config


def write_config(path: str | Path, config: dict[str, Any]) -> None:
    atomic_write_json(RunDir(Path(path)).config, config)


def save_weights(path: str | Path, model: nn.Module) -> None:
    """Write model.safetensors atomically; tensors shared by tying are stored once."""
    from safetensors import SafetensorError
    from safetensors.torch import save_model

    with atomic_path(RunDir(Path(path)).weights) as tmp:
        try:
            save_model(model, str(tmp))
        except SafetensorError as err:  # its I/O failures (a full disk) are OS errors
            raise OSError(str(err).rsplit(": ", 1)[-1]) from None


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple:
    """(model in eval mode, tokenizer, model_config) from a run directory."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model as load_weights

    from parrot.model import ModelConfig, VisionConfig, VisionLanguageModel, build_model
    from parrot.tokenizer import Tokenizer

    run = require_run_dir(path)
    config = read_config(run.root)
    if "rnn" in config:  # the GRU encoder-decoders of the RNN history lesson
        from parrot.model.rnn import RNNConfig, build_rnn

        model_config = RNNConfig.from_dict(config["rnn"])
        model = build_rnn(model_config)
    elif "vision" in config:  # a vision-language run: the language model plus its image side
        model_config = ModelConfig.from_dict(config["model"])
        model = VisionLanguageModel(model_config, VisionConfig.from_dict(config["vision"]))
    else:
        model_config = ModelConfig.from_dict(config["model"])
        check_weights_fit(model_config, run)  # before allocating what config.json describes
        model = build_model(model_config)  # a Transformer, or an EncoderDecoder (seq2seq)
    try:
        load_weights(model, str(run.weights), device="cpu")
    except (SafetensorError, OSError) as err:
        raise ParrotError(f"{run.weights} is not a readable safetensors file "
                          f"({str(err)[:160]}); the run directory is damaged.") from None
    except RuntimeError as err:  # missing, unexpected or misshapen tensors
        raise ParrotError(f"{run.weights} does not fit the model in {run.config} "
                          f"({str(err).splitlines()[0][:160]}).") from None
    if not run.tokenizer.is_file():
        raise ParrotError(f"{run.root} has no tokenizer.json; the run directory is incomplete.")
    tokenizer = Tokenizer.load(run.tokenizer)
    return model.to(device).eval(), tokenizer, model_config


def check_weights_fit(model_config: Any, run: RunDir) -> None:
    """ParrotError unless model.safetensors holds a tensor of the right shape for every
    weight the config describes (compared on the meta device, so a config claiming a
    model of 2^60 parameters allocates nothing)."""
    from safetensors import SafetensorError, safe_open

    from parrot.model import build_model

    try:
        with torch.device("meta"):
            meta = build_model(model_config)
        planned = {k: tuple(v.shape) for k, v in meta.state_dict().items()}
    except (RuntimeError, TypeError, ValueError, OverflowError, MemoryError) as err:
        raise ParrotError(f"{run.config} describes a model that cannot be built "
                          f"({str(err).splitlines()[0][:120]}).") from None
    try:
        with safe_open(str(run.weights), framework="pt") as f:
            stored = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError) as err:
        raise ParrotError(f"{run.weights} is not a readable safetensors file "
                          f"({str(err)[:160]}); the run directory is damaged.") from None
    names: dict[int, set[str]] = {}  # a tied tensor is stored under one of its names
    for n, p in meta.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), set()).add(n)
    stored_as = {n for group in names.values() if group & set(stored) for n in group}
    wrong = [k for k, shape in stored.items() if k in planned and planned[k] != shape]
    missing = set(planned) - set(stored) - stored_as
    if wrong or missing or not set(stored) <= set(planned):
        raise ParrotError(f"{run.weights} does not fit the model in {run.config} (tensor "
                          f"{(wrong or sorted(missing | (set(stored) - set(planned))))[0]!r}).")


def save_rnn_run(path: str | Path, model: nn.Module, tokenizer: Any,
                 config: dict[str, Any]) -> Path:
    """Write a run directory (config.json with an "rnn" section, weights, tokenizer)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer.save(path)
    save_weights(path, model)
    write_config(path, config)
    return path


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
