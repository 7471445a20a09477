"""The one training entry point: every kind of training is a recipe run by `run_training`.

A recipe (pretraining, masked LM, denoising, SFT with any adapter, distillation, seq2seq
pairs) builds a `Run`: the module to train, an objective, a data source (sampler and fixed
validation batches), its TrainConfig, the run's config.json and tokenizer, and how a
checkpoint saves the model. `run_training` does the rest, the same way for all of them:

    check the out directory (an existing run needs resume; resume needs a checkpoint)
    → prepare (main rank, new runs: files every rank then reads, e.g. token shards)
    → build the Run (from the saved config.json when there is one)
    → write config.json + tokenizer.json (new run) → optimizer, DDP, compile, loop
    → resume from checkpoint.pt, or start → train → one TrainResult

Resumed runs continue bit-identically: checkpoints hold the trainable tensors, the
optimizer, the sampler and every RNG, and the recipe rebuilds everything else from the
saved settings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from parrot.errors import ParrotError
from parrot.rundir import (
    RunDir,
    append_metrics,
    read_config,
    read_metrics,
    save_weights,
    truncate_metrics,
    write_config,
)
from parrot.training.balance import balance_hooks
from parrot.training.checkpoint import load_checkpoint, set_rng_state
from parrot.training.config import TrainConfig
from parrot.training.distributed import (
    DistInfo,
    barrier,
    dist_info_from_env,
    init_distributed,
    rank_device,
    shutdown,
    wrap_model,
)
from parrot.training.fsdp import meta_copy
from parrot.training.loop import Hook, Loop, LoopState, evaluate, run_loop
from parrot.training.objectives import Objective
from parrot.training.optim import build_adamw
from parrot.training.sharded import has_sharded, load_sharded


@dataclass(frozen=True)
class TrainResult:
    """What every training function returns. final_val_loss: the last logged val_loss
    (None without validation data); metrics: recipe extras (trainable_parameters,
    total_parameters, val_loss_before, val_exact_match, ...)."""

    run_dir: Path
    steps: int
    train_time_s: float
    final_val_loss: float | None
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class Run:
    """What a recipe builds for one run (see the module docstring).

    eval_at_start: log the validation metrics at step 0 of a new run (the base model's
    loss before fine-tuning); finish: after the last step (main rank), metrics logged on
    the last step and returned in TrainResult.metrics.
    """

    model: nn.Module
    objective: Objective
    sampler: Any
    val_batches: list[Any]
    train: TrainConfig
    config: dict[str, Any]
    tokenizer: Any
    save_model: Callable[[Path, nn.Module], None] = save_weights
    eval_objective: Objective | None = None
    hooks: Sequence[Hook] = ()
    eval_at_start: bool = False
    metrics: dict[str, Any] = field(default_factory=dict)
    finish: Callable[[nn.Module], dict[str, Any]] | None = None


@dataclass
class Job:
    """A training job. build(saved) makes the Run; `saved` is the run's config.json when
    it exists (a resumed run, or one written by `prepare`), else None. overrides: the
    --set strings, which a resumed run refuses (it keeps its saved settings)."""

    out: Path
    build: Callable[[dict[str, Any] | None], Run]
    resume: bool = False
    prepare: Callable[[Path], None] | None = None
    overrides: Sequence[str] = ()
    hooks: Sequence[Hook] = ()
    show_progress: bool = True


def check_out_dir(out: Path, resume: bool, overrides: Sequence[str] = ()) -> None:
    """ParrotError for an existing run without resume, or resume without a checkpoint."""
    run = RunDir(out)
    if resume and overrides:
        raise ParrotError("--set cannot change a resumed run; resume it without --set.")
    if resume and not (run.checkpoint.is_file() or has_sharded(out)):
        raise ParrotError(f"{out} has no checkpoint to resume; start it without --resume.")
    if not resume and run.config.exists():
        raise ParrotError(f"{out} already holds a run; pass --resume to continue it or "
                          "choose another --out.")


def run_training(job: Job) -> TrainResult:
    """Run `job` to its last step (see the module docstring); torchrun's ranks each call it."""
    out, info = Path(job.out), dist_info_from_env()
    init_distributed(info)
    try:
        if info.is_main:
            check_out_dir(out, job.resume, job.overrides)
            if job.prepare is not None and not job.resume:
                out.mkdir(parents=True, exist_ok=True)
                job.prepare(out)
        barrier(info)  # the other ranks read what the main rank prepared
        run = job.build(read_config(out) if RunDir(out).config.is_file() else None)
        loop = build_loop(run, job, info)
        state = resume_state(loop) if job.resume else start(loop, run)
        state = run_loop(loop, state)
        extra = finish_run(loop, run, state)
        barrier(info)
    finally:
        shutdown(info)
    rows = read_metrics(out)
    vals = [r["val_loss"] for r in rows if "val_loss" in r]
    before = [r["val_loss"] for r in rows if r.get("step") == 0 and "val_loss" in r]
    metrics = {**run.metrics, **_parameter_counts(loop.raw),
               **({"val_loss_before": before[0]} if before else {}), **extra}
    return TrainResult(out, state.step, state.train_time, vals[-1] if vals else None, metrics)


def build_loop(run: Run, job: Job, info: DistInfo) -> Loop:
    """Optimizer, data-parallel wrapper, compilation and hooks around the Run's model."""
    cfg = run.train
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = rank_device(info, cfg.device)
    raw = run.model.to(device)
    sharded = cfg.strategy == "fsdp" and info.enabled
    shadow = meta_copy(raw) if sharded else None  # on every rank: full_view is collective
    model = wrap_model(raw, info, device, cfg.strategy)  # FSDP shards `raw` in place
    optimizer = build_adamw(raw, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2))
    if cfg.compile:
        model = torch.compile(model)
    hooks = [*balance_hooks(raw), *run.hooks, *job.hooks]
    return Loop(model, raw, optimizer, run.sampler, run.val_batches, cfg, run.objective,
                RunDir(Path(job.out)), info, device, job.show_progress, run.save_model,
                run.eval_objective, hooks, shadow)


def start(loop: Loop, run: Run) -> LoopState:
    """A new run: config.json and tokenizer.json (main rank), and with eval_at_start the
    step-0 validation row (kept in metrics.jsonl, so a resumed run still reports it)."""
    # every rank evaluates: a sharded model's forward pass is collective
    before = evaluate(loop) if run.eval_at_start and loop.val_batches else None
    if loop.dist.is_main:
        root = loop.run.root
        root.mkdir(parents=True, exist_ok=True)
        run.tokenizer.save(root)
        write_config(root, run.config)
        if before is not None:
            append_metrics(root, {"step": 0, **before})
    return LoopState()


def resume_state(loop: Loop) -> LoopState:
    """Restore the checkpoint into the loop's parts and return where it stopped."""
    root = loop.run.root
    if loop.config.strategy == "fsdp" and has_sharded(root):
        state = load_sharded(root, loop.raw, loop.optimizer)
    else:
        state = load_checkpoint(loop.run.checkpoint, loop.raw, loop.optimizer)
    loop.sampler.load_state_dict(state["sampler"])
    if loop.dist.is_main:
        truncate_metrics(loop.run.root, state["step"])
    set_rng_state(state["rng"])  # last: nothing may draw numbers after this
    extra = state["extra"]
    return LoopState(state["step"], extra.get("tokens", 0), extra.get("train_time", 0.0))


def finish_run(loop: Loop, run: Run, state: LoopState) -> dict[str, Any]:
    """The recipe's end-of-run metrics (main rank), logged on the last step."""
    if run.finish is None or not loop.dist.is_main:
        return {}
    loop.raw.eval()
    extra = run.finish(loop.raw)
    append_metrics(loop.run.root, {"step": state.step, **extra})
    return extra


def model_spec(model: str | Path) -> str:
    """How config.json names a MODEL: an absolute path for files, else the name as given."""
    return str(Path(model).resolve()) if Path(model).exists() else str(model)


def _parameter_counts(model: nn.Module) -> dict[str, int]:
    params = list(model.parameters())  # a tensor shared by tying comes once
    return {"trainable_parameters": sum(p.numel() for p in params if p.requires_grad),
            "total_parameters": sum(p.numel() for p in params)}
