"""The training loop, independent of what is learned (the objective) and of the data.

Each optimizer step runs `grad_accum` micro-batches (gradients summed, loss scaled by
1/grad_accum), clips the global gradient norm, and steps AdamW at the scheduled learning
rate. Validation runs on a fixed set of batches every `eval_every` steps. Only the main
rank writes metrics, pictures and checkpoints. Timings exclude evaluation and writing.

Mixture-of-experts models: after each optimizer step the loss-free layers move their
selection bias (`update_balance_bias`, loads summed over ranks); logged rows carry the
per-layer expert load and its entropy, and checkpoints draw `experts.png`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from parrot.data.batches import WindowSampler
from parrot.model.moe import update_balance_bias
from parrot.rundir import RunDir, append_metrics, read_metrics, save_weights
from parrot.train.checkpoint import save_checkpoint
from parrot.train.config import TrainConfig
from parrot.train.distributed import DistInfo, mean_across_ranks
from parrot.train.metrics import plot_losses
from parrot.train.moe_metrics import EXPERTS_PICTURE, moe_row, plot_expert_loads
from parrot.train.objectives import Objective
from parrot.train.schedule import lr_at
from parrot.utils.progress import progress_bar


@dataclass
class LoopState:
    """Where a run stands: completed optimizer steps, tokens seen, seconds spent training."""

    step: int = 0
    tokens: int = 0
    train_time: float = 0.0


@dataclass
class Loop:
    """What one run trains: `model` may be wrapped (DDP, compiled); `raw` is the bare model."""

    model: nn.Module
    raw: nn.Module
    optimizer: torch.optim.Optimizer
    sampler: WindowSampler
    val_batches: list[torch.Tensor]
    config: TrainConfig
    objective: Objective
    run: RunDir | None = None
    dist: DistInfo = field(default_factory=DistInfo)
    device: str = "cpu"
    show_progress: bool = True
    # What a checkpoint writes as the model (fine-tuning writes only its adapter), and
    # whether it also writes checkpoint.pt (optimizer + RNG state) for --resume.
    save_model: Callable[[Path, nn.Module], None] = save_weights
    resumable: bool = True
    # What validation measures (None: the training objective); distillation validates on
    # plain next-token loss so distilled and hard-label runs compare on one scale.
    eval_objective: Objective | None = None


def autocast(config: TrainConfig, device: str) -> contextlib.AbstractContextManager:
    """bf16 autocast when asked (matmuls in bf16, reductions kept in fp32)."""
    if not config.bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def train_step(loop: Loop, lr: float) -> tuple[float, float]:
    """One optimizer step; returns (mean loss over ranks and micro-batches, grad norm)."""
    cfg = loop.config
    for group in loop.optimizer.param_groups:
        group["lr"] = lr
    total = torch.zeros((), device=loop.device)
    for micro in range(cfg.grad_accum):
        batch = loop.sampler.next().to(loop.device, non_blocking=True)
        # DDP all-reduces gradients only on the last micro-batch of the step.
        last = micro == cfg.grad_accum - 1
        sync = contextlib.nullcontext() if last or not loop.dist.enabled else loop.model.no_sync()
        with sync:
            with autocast(cfg, loop.device):
                loss, _ = loop.objective(loop.model, batch)
            (loss / cfg.grad_accum).backward()
        total += loss.detach()
    max_norm = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(loop.raw.parameters(), max_norm)
    loop.optimizer.step()
    loop.optimizer.zero_grad(set_to_none=True)
    # Only the ratio to the mean load matters, so the mean over ranks serves as the sum.
    update_balance_bias(loop.raw, lambda load: mean_across_ranks(load, loop.dist))
    loss = mean_across_ranks(total / cfg.grad_accum, loop.dist)
    return float(loss), float(grad_norm)


@torch.no_grad()
def evaluate(loop: Loop) -> float:
    """Mean objective loss over the fixed validation batches."""
    loop.model.eval()
    losses = []
    for batch in loop.val_batches:
        with autocast(loop.config, loop.device):
            objective = loop.eval_objective or loop.objective
            loss, _ = objective(loop.raw, batch.to(loop.device))
        losses.append(float(loss))
    loop.model.train()
    return sum(losses) / max(1, len(losses))


def checkpoint(loop: Loop, state: LoopState) -> None:
    """Weights, full training state and the loss picture (main rank only)."""
    if loop.run is None or not loop.dist.is_main:
        return
    loop.save_model(loop.run.root, loop.raw)
    if loop.resumable:
        extra = {"tokens": state.tokens, "train_time": state.train_time}
        save_checkpoint(loop.run.checkpoint, loop.raw, loop.optimizer, state.step,
                        loop.sampler.state_dict(), extra)
    rows = read_metrics(loop.run.root)
    plot_losses(rows, loop.run.plot)
    plot_expert_loads(rows, loop.run.root / EXPERTS_PICTURE)


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
            loss, grad_norm = train_step(loop, lr)
            elapsed = time.perf_counter() - t0
            state.step, state.tokens = state.step + 1, state.tokens + tokens_per_step
            state.train_time += elapsed
            window_tokens, window_time = window_tokens + tokens_per_step, window_time + elapsed
            if state.step % cfg.log_every == 0 or state.step == cfg.steps:
                speed = window_tokens / max(window_time, 1e-9)
                log(loop, {"step": state.step, "loss": loss, "lr": lr, "grad_norm": grad_norm,
                           "tokens": state.tokens, "tokens_per_s": speed,
                           "train_time_s": state.train_time,
                           "wall_time_s": time.perf_counter() - start_wall,
                           **moe_row(loop.raw)})
                bar.update(0, description=f"step {state.step} loss {loss:.3f} {speed:,.0f} tok/s")
                window_tokens, window_time = 0, 0.0
            if loop.val_batches and (state.step % cfg.eval_every == 0 or state.step == cfg.steps):
                log(loop, {"step": state.step, "val_loss": evaluate(loop),
                           "train_time_s": state.train_time,
                           "wall_time_s": time.perf_counter() - start_wall})
            if state.step % cfg.checkpoint_every == 0 or state.step == cfg.steps:
                checkpoint(loop, state)
            bar.update(0, completed=state.step)
    return state
