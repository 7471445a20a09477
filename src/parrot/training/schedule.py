"""Learning-rate schedules: pure functions of the step number."""

from __future__ import annotations

import math


def lr_at(step: int, lr: float, min_lr: float, warmup: int, total: int) -> float:
    """Linear warmup to `lr`, then cosine decay to `min_lr` at step `total`.

    warmup (step < W):      lr * (step + 1) / W          (reaches `lr` on step W - 1)
    decay  (W <= step <= N): min_lr + (lr - min_lr) * (1 + cos(pi * (step - W) / (N - W))) / 2
    after  (step > N):      min_lr
    """
    if step < warmup:
        return lr * (step + 1) / warmup
    if step >= total:
        return min_lr
    progress = (step - warmup) / max(1, total - warmup)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
