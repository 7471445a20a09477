"""Fine-tuning a pretrained model on conversations: full, LoRA or soft prompt.

    base MODEL ──resolve──▶ model + tokenizer + chat template
    data.jsonl ──render──▶ (ids, assistant-only mask) ──▶ SFT objective ──▶ the training loop

The method only decides which parameters train (all of them, LoRA's A/B, or a prompt) and
what the run directory keeps:

    full          a complete run directory (config.json with the model, model.safetensors,
                  tokenizer.json): every command that takes a run directory takes it
    lora, soft-prompt   adapter.safetensors + adapter_config.json (naming the base) and
                  config.json without a model section: loaded as base + adapter

LoRA with quantize="int8" (QLoRA-style) first turns the frozen base's Linear layers into
int8 ones (`parrot.adapt.qlora`); the adapter config records it, so loading puts the
adapter back on the same int8 weights.

Every `checkpoint_every` steps a run writes its trained part and checkpoint.pt (the
trainable tensors only, the optimizer, the sampler and every RNG; the frozen base is
reloaded from MODEL), so `resume=True` continues a killed run bit-exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from parrot.adapt.lora import (
    apply_lora,
    is_adapter_dir,
    merge_lora,
    read_adapter_config,
    save_adapter,
)
from parrot.adapt.qlora import quantize_linears
from parrot.adapt.soft_prompt import SoftPromptModel, save_soft_prompt
from parrot.data.sft import (
    SFTSampler,
    encode_conversations,
    fixed_sft_batches,
    load_conversations,
)
from parrot.errors import ParrotError
from parrot.hub.resolve import resolve_model
from parrot.rundir import save_weights, write_config
from parrot.training.config import TrainConfig, override
from parrot.training.distributed import dist_info_from_env
from parrot.training.loop import Hook
from parrot.training.objectives_sft import sft
from parrot.training.session import Job, Run, TrainResult, model_spec, run_training
from parrot.utils.seed import seed_everything

Method = Literal["full", "lora", "soft-prompt"]


@dataclass(frozen=True)
class FinetuneConfig:
    """What to adapt and how. LoRA: rank, alpha, targets, dropout; soft prompt: prompt_tokens."""

    method: Method = "lora"
    rank: int = 8
    alpha: float = 16.0
    targets: str = "q,k,v,o"
    dropout: float = 0.0
    prompt_tokens: int = 16
    template: str | None = None  # None = the model's own chat template, else chatml
    max_len: int = 512
    val_fraction: float = 0.1
    quantize: str | None = None  # "int8": the frozen base's Linear weights stay int8 (QLoRA)

    def __post_init__(self) -> None:
        if self.method not in ("full", "lora", "soft-prompt"):
            raise ParrotError(f"--method must be full, lora or soft-prompt, got {self.method!r}.")
        if self.quantize not in (None, "int8"):
            raise ParrotError(f"--quantize must be int8, got {self.quantize!r}.")
        if self.quantize and self.method != "lora":
            raise ParrotError("--quantize int8 freezes the base in int8, which only --method "
                              "lora trains on top of; drop --quantize or use LoRA.")
        if self.max_len < 2:
            raise ParrotError(f"--max-len must be at least 2, got {self.max_len}.")
        if not 0 <= self.val_fraction < 1:
            raise ParrotError(f"--val-fraction must lie in [0, 1), got {self.val_fraction}.")


def prepare_model(model: nn.Module, cfg: FinetuneConfig) -> nn.Module:
    """The module to train: the model itself (full), wrapped Linears (LoRA) or a prompt."""
    if cfg.method == "lora":
        if cfg.quantize == "int8":
            quantize_linears(model)
        apply_lora(model, cfg.targets, cfg.rank, cfg.alpha, cfg.dropout)
        return model
    if cfg.method == "soft-prompt":
        return SoftPromptModel(model, cfg.prompt_tokens)
    return model.requires_grad_(True)


def split_examples(examples: list, fraction: float, seed: int) -> tuple[list, list]:
    """A seeded shuffle, then the last `fraction` (at least one, if any) for validation."""
    if fraction == 0 or len(examples) < 2:
        return examples, []
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed))
    shuffled = [examples[i] for i in order.tolist()]
    n_val = max(1, round(len(examples) * fraction))
    return shuffled[:-n_val], shuffled[-n_val:]


def model_saver(cfg: FinetuneConfig, base: str, extra: dict[str, Any]):
    """How checkpoints write the trained part: full weights or only the adapter."""
    info = {"base": base, **extra, **({"quantize": cfg.quantize} if cfg.quantize else {})}

    def save(root: Path, module: nn.Module) -> None:
        if cfg.method == "full":
            save_weights(root, module)
        elif cfg.method == "lora":
            save_adapter(module, root, info)
        else:
            save_soft_prompt(module, root, info)
    return save


# What a fine-tuning run trains with unless --set changes it.
FINETUNE_TRAIN = TrainConfig(steps=100, batch_size=4, lr=1e-3, min_lr=1e-4, warmup=10,
                             weight_decay=0.0, eval_every=25, checkpoint_every=25, log_every=5)


def finetune(model: str | Path, data: str | Path, out: str | Path,
             cfg: FinetuneConfig = FinetuneConfig(), overrides: Sequence[str] = (),
             resume: bool = False, hooks: Sequence[Hook] = (),
             show_progress: bool = True, home: str | Path | None = None) -> TrainResult:
    """Fine-tune MODEL on the conversations in `data` into run directory `out` (a pulled
    MODEL is looked up under `home`).

    overrides: `train.FIELD=VALUE` strings on FINETUNE_TRAIN. resume=True continues the
    run in `out` from its last checkpoint with the settings saved in its config.json
    (`cfg` is then ignored); the result equals an uninterrupted run bit for bit.
    result.metrics holds val_loss_before (the base's), trainable_parameters and
    total_parameters.
    """
    build = partial(build_finetune, spec=model_spec(model), data=data, cfg=cfg,
                    overrides=overrides, home=home)
    return run_training(Job(Path(out), build, resume, overrides=overrides, hooks=hooks,
                            show_progress=show_progress))


def build_finetune(saved: dict[str, Any] | None, spec: str, data: str | Path,
                   cfg: FinetuneConfig, overrides: Sequence[str],
                   home: str | Path | None = None) -> Run:
    """The Run: base (any MODEL) + adapter, SFT batches of the rendered conversations."""
    if saved is not None:
        cfg, train, data = resumed_settings(saved, spec, data)
    else:
        train = override({"train": FINETUNE_TRAIN}, overrides)["train"]
    conversations = load_conversations(data)  # bad data fails before the model loads
    base, tokenizer, info = resolve_model(spec, train.device, home=home)
    template = cfg.template or getattr(info, "chat_template", None) or "chatml"
    max_len = min(cfg.max_len, base.config.context_length - (
        cfg.prompt_tokens if cfg.method == "soft-prompt" else 0) - 1)
    examples = encode_conversations(conversations, tokenizer, template, max_len)
    train_ex, val_ex = split_examples(examples, cfg.val_fraction, train.seed)
    seed_everything(train.seed)
    trained = prepare_model(base, cfg)
    val = fixed_sft_batches(val_ex, train.eval_batch_size or train.batch_size) if val_ex else []
    info = dist_info_from_env()
    sampler = SFTSampler(train_ex, train.batch_size, train.seed, info.rank, info.world_size)
    return Run(trained, sft, sampler, val, train,
               run_config(cfg, train, spec, template, data, trained), tokenizer,
               model_saver(cfg, spec, {"template": template}), eval_at_start=True)


def resumed_settings(saved: dict[str, Any], base_spec: str,
                     data: str | Path) -> tuple[FinetuneConfig, TrainConfig, str]:
    """The saved settings of a fine-tuning run, after checking MODEL and data match."""
    ft = dict(saved["finetune"])
    if ft.pop("base") != base_spec:
        raise ParrotError("This run fine-tunes another base model; resume it with MODEL "
                          "as it was started.")
    saved_data = ft.pop("data")
    if Path(data).resolve() != Path(saved_data).resolve():
        raise ParrotError(f"This run was started on --data {saved_data}; resume it on the "
                          "same data.")
    ft.pop("template")
    return FinetuneConfig(**ft), TrainConfig.from_dict(saved["train"]), saved_data


def run_config(cfg: FinetuneConfig, train: TrainConfig, base: str, template: str,
               data: str | Path, trained: nn.Module) -> dict[str, Any]:
    """config.json: a full fine-tune is a complete run directory (it has a model section)."""
    config: dict[str, Any] = {"finetune": {**dataclasses.asdict(cfg), "base": base, "template": template,
                                           "data": str(Path(data).resolve())},
                              "train": train.to_dict()}
    if cfg.method == "full":
        config["model"] = trained.config.to_dict()
    return config


@torch.no_grad()
def sft_loss(model: nn.Module, tokenizer: Any, template: str, data: str | Path,
             max_len: int = 512, batch_size: int = 4) -> float:
    """Mean assistant-token loss of `model` on the conversations in `data` (held-out loss)."""
    examples = encode_conversations(load_conversations(data), tokenizer, template, max_len)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0.0
    for batch in fixed_sft_batches(examples, batch_size):
        loss, metrics = sft(model, batch)
        total += float(loss) * float(metrics["loss_tokens"])
        count += float(metrics["loss_tokens"])
    model.train(was_training)
    return total / max(count, 1.0)


def merge_run(run_dir: str | Path, out: str | Path, home: str | Path | None = None) -> Path:
    """Fold a LoRA run's adapter into its base; write a plain run directory to `out`."""
    run_dir, out = Path(run_dir), Path(out)
    if not is_adapter_dir(run_dir):
        raise ParrotError(f"{run_dir} holds no adapter (adapter_config.json and "
                          "adapter.safetensors); pass a run made by parrot finetune --method lora.")
    config = read_adapter_config(run_dir)
    if config.get("method") != "lora":
        raise ParrotError(f"{run_dir} holds a {config.get('method')} adapter; only LoRA "
                          "adapters fold into the weights (a soft prompt stays an input).")
    if (out / "config.json").exists():
        raise ParrotError(f"{out} already holds a run; choose another --out.")
    model, tokenizer, _ = resolve_model(run_dir, home=home)
    merge_lora(model)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save(out)
    save_weights(out, model)
    write_config(out, {"model": model.config.to_dict(),
                       "finetune": {**config, "merged_from": str(run_dir.resolve())}})
    return out


__all__ = ["FINETUNE_TRAIN", "FinetuneConfig", "finetune", "merge_run", "sft_loss"]
