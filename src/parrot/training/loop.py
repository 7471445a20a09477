"""The training loop, independent of what is learned (the objective) and of the data.

Each optimizer step runs `grad_accum` micro-batches (gradients summed, loss scaled by
1/grad_accum), clips the global gradient norm, and steps AdamW at the scheduled learning
rate. Every scalar metric the objective returns is averaged over the micro-batches and the
data-parallel ranks and logged with the step; validation runs on a fixed set of batches
every `eval_every` steps and logs the eval objective's loss and metrics as `val_<name>`.
Only the main rank writes metrics and checkpoints. Timings exclude evaluation and writing.

Hooks carry what only some runs need (MoE balancing, pictures): after each optimizer step
`after_step(loop, state)`, extra fields for each logged row `row(loop)`, and after each
checkpoint `on_checkpoint(run_dir)` (main rank).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from parrot.errors import ParrotError
from parrot.rundir import RunDir, append_metrics, save_weights
from parrot.training.checkpoint import save_checkpoint
from parrot.training.config import TrainConfig
from parrot.training.distributed import DistInfo, gradient_sync, mean_across_ranks
from parrot.training.fsdp import full_value, full_view
from parrot.training.objectives import Objective
from parrot.training.schedule import lr_at
from parrot.training.sharded import save_sharded
from parrot.utils.progress import progress_bar


@dataclass
class LoopState:
    """Where a run stands: completed optimizer steps, tokens seen, seconds spent training."""

    step: int = 0
    tokens: int = 0
    train_time: float = 0.0


class Hook:
    """Something a run adds to the loop; every method is optional (these do nothing)."""

    def after_step(self, loop: Loop, state: LoopState) -> None:
        """After each optimizer step (every rank, in the same order)."""

    def row(self, loop: Loop) -> dict[str, Any]:
        """Extra fields for a logged training row (called on every rank)."""
        return {}

    def on_checkpoint(self, run_dir: Path) -> None:
        """After the main rank has written a checkpoint into `run_dir`."""


@dataclass
class Loop:
    """What one run trains: `model` may be wrapped (DDP, compiled); `raw` is the bare model.

    `sampler` has next(), state_dict(), load_state_dict() and seq_len (for tokens/s).
    """

    model: nn.Module
    raw: nn.Module
    optimizer: torch.optim.Optimizer
    sampler: Any
    val_batches: list[Any]
    config: TrainConfig
    objective: Objective
    run: RunDir | None = None
    dist: DistInfo = field(default_factory=DistInfo)
    device: str = "cpu"
    show_progress: bool = True
    # What a checkpoint writes as the model (fine-tuning writes only its adapter).
    save_model: Callable[[Path, nn.Module], None] = save_weights
    # What validation measures (None: the training objective); distillation validates on
    # plain next-token loss so distilled and hard-label runs compare on one scale.
    eval_objective: Objective | None = None
    hooks: Sequence[Hook] = ()
    # FSDP across ranks: a meta-device copy of the model that checkpoints fill with the
    # gathered full weights (see parrot.training.fsdp.full_view).
    shadow: nn.Module | None = None


def autocast(config: TrainConfig, device: str) -> contextlib.AbstractContextManager:
    """bf16 autocast when asked (matmuls in bf16, reductions kept in fp32)."""
    if not config.bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def _accumulate(sums: dict[str, torch.Tensor], loss: torch.Tensor, metrics: dict) -> None:
    """Add one micro-batch's loss and scalar metrics to the running sums (no host sync).

    "loss" is always the loss that was optimised (an objective's own "loss" metric, e.g.
    cross-entropy without an auxiliary term, is replaced by it).
    """
    for name, value in {**metrics, "loss": loss}.items():
        value = torch.as_tensor(value, device=loss.device).detach().float()
        sums[name] = sums[name] + value if name in sums else value


def train_step(loop: Loop, lr: float) -> dict[str, float]:
    """One optimizer step; returns the objective's metrics and "loss" (means over ranks and
    micro-batches) and "grad_norm" (before clipping), with one host sync."""
    cfg = loop.config
    for group in loop.optimizer.param_groups:
        group["lr"] = lr
    sums: dict[str, torch.Tensor] = {}
    for micro in range(cfg.grad_accum):
        batch = loop.sampler.next().to(loop.device, non_blocking=True)
        # Gradients are averaged across ranks only on the last micro-batch of the step.
        with gradient_sync(loop.model, loop.dist, micro == cfg.grad_accum - 1):
            with autocast(cfg, loop.device):
                loss, metrics = loop.objective(loop.model, batch)
            (loss / cfg.grad_accum).backward()
        _accumulate(sums, loss, metrics)
    max_norm = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
    grad_norm = full_value(torch.nn.utils.clip_grad_norm_(loop.raw.parameters(), max_norm))
    loop.optimizer.step()
    loop.optimizer.zero_grad(set_to_none=True)
    names = list(sums)
    means = mean_across_ranks(torch.stack([sums[n] for n in names]) / cfg.grad_accum, loop.dist)
    values = torch.cat([means, grad_norm.detach().float().reshape(1).to(means.device)]).tolist()
    return {**dict(zip(names, values[:-1], strict=True)), "grad_norm": values[-1]}


@torch.no_grad()
def evaluate(loop: Loop) -> dict[str, float]:
    """Means over the fixed validation batches: "val_loss" and "val_<metric>" for each
    scalar metric of the eval objective."""
    loop.model.eval()
    objective = loop.eval_objective or loop.objective
    sums: dict[str, torch.Tensor] = {}
    for batch in loop.val_batches:
        with autocast(loop.config, loop.device):
            loss, metrics = objective(loop.raw, batch.to(loop.device))
        _accumulate(sums, loss, metrics)
    loop.model.train()
    if not sums:
        return {}
    names = list(sums)
    values = (torch.stack([sums[n] for n in names]) / len(loop.val_batches)).tolist()
    return {f"val_{n}": v for n, v in zip(names, values, strict=True)}


def checkpoint(loop: Loop, state: LoopState) -> None:
    """Weights and full training state, then the hooks' on_checkpoint (main rank).

    DDP and single runs: the main rank writes model.safetensors and checkpoint.pt. FSDP:
    every rank takes part (gathering the full weights, writing its own slices)."""
    if loop.run is None:
        return
    extra = {"tokens": state.tokens, "train_time": state.train_time}
    if loop.config.strategy == "fsdp":
        module = full_view(loop.shadow, loop.raw) if loop.shadow is not None else loop.raw
        if loop.dist.is_main:
            _save_model(loop, module)
        save_sharded(loop.run.root, loop.raw, loop.optimizer, state.step,
                     loop.sampler.state_dict(), extra, loop.dist.is_main)
    elif loop.dist.is_main:
        _save_model(loop, loop.raw)
        save_checkpoint(loop.run.checkpoint, loop.raw, loop.optimizer, state.step,
                        loop.sampler.state_dict(), extra)
    if loop.dist.is_main:
        for hook in loop.hooks:
            hook.on_checkpoint(loop.run.root)


def _save_model(loop: Loop, module: nn.Module) -> None:
    try:
        loop.save_model(loop.run.root, module)
    except OSError as err:  # atomic writes: the previous weights are still in place
        raise ParrotError(f"Could not write the weights into {loop.run.root} "
                          f"({err.strerror or err}); the previous checkpoint is intact: free "
                          "some space and continue with --resume.") from None


def log(loop: Loop, row: dict) -> None:
    if loop.run is not None and loop.dist.is_main:
        append_metrics(loop.run.root, row)


def run_loop(loop: Loop, state: LoopState | None = None) -> LoopState:
    """Train from `state` (a fresh run when None) to `config.steps`; return the final state."""
    cfg, state = loop.config, state or LoopState()
    tokens_per_step = cfg.batch_size * cfg.grad_accum * loop.sampler.seq_len
    start_wall, window_tokens, window_time = time.perf_counter(), 0, 0.0
    loop.model.train()
    show = loop.show_progress and loop.dist.is_main
    with progress_bar("training", total=cfg.steps, enabled=show) as bar:
        bar.update(0, completed=state.step)
        while state.step < cfg.steps:
            lr = lr_at(state.step, cfg.lr, cfg.min_lr, cfg.warmup, cfg.steps)
            t0 = time.perf_counter()
            metrics = train_step(loop, lr)
            state.step, state.tokens = state.step + 1, state.tokens + tokens_per_step
            for hook in loop.hooks:
                hook.after_step(loop, state)
            elapsed = time.perf_counter() - t0
            state.train_time += elapsed
            window_tokens, window_time = window_tokens + tokens_per_step, window_time + elapsed
            if state.step % cfg.log_every == 0 or state.step == cfg.steps:
                speed = window_tokens / max(window_time, 1e-9)
                extra = {k: v for hook in loop.hooks for k, v in hook.row(loop).items()}
                log(loop, {"step": state.step, **metrics, "lr": lr, "tokens": state.tokens,
                           "tokens_per_s": speed, "train_time_s": state.train_time,
                           "wall_time_s": time.perf_counter() - start_wall, **extra})
                bar.update(0, description=f"step {state.step} loss {metrics['loss']:.3f} "
                                          f"{speed:,.0f} tok/s")
                window_tokens, window_time = 0, 0.0
            if loop.val_batches and (state.step % cfg.eval_every == 0 or state.step == cfg.steps):
                log(loop, {"step": state.step, **evaluate(loop),
                           "train_time_s": state.train_time,
                           "wall_time_s": time.perf_counter() - start_wall})
            if state.step % cfg.checkpoint_every == 0 or state.step == cfg.steps:
                checkpoint(loop, state)
            bar.update(0, completed=state.step)
    return state
