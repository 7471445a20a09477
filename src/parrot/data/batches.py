"""Seeded samplers, reproducible and resumable: random token windows (examples: sft.py, pairs.py).

Each window draw picks `batch_size` start offsets with a seeded `torch.Generator` and returns
windows of `seq_len + 1` ids (inputs and shifted targets). The generator state is the whole
data position, so a checkpoint that stores `state_dict()` resumes the exact same stream.

Data parallelism: every rank draws the same global offsets and keeps its own contiguous
slice of rows, so N ranks together see exactly the batch one process would see.
"""

from __future__ import annotations

import numpy as np
import torch

from parrot.errors import ParrotError


def check_enough_tokens(n_tokens: int, seq_len: int, what: str) -> None:
    """A window needs seq_len + 1 ids (inputs plus the shifted target)."""
    if n_tokens < seq_len + 1:
        raise ParrotError(
            f"The {what} data has {n_tokens} tokens, fewer than the {seq_len + 1} one window of "
            f"context {seq_len} needs; give more text or lower the context length."
        )


def gather_windows(data: np.ndarray, offsets: torch.Tensor, length: int) -> torch.Tensor:
    """Rows data[o : o + length] for each offset, as an int64 tensor (B, length)."""
    index = offsets.numpy()[:, None] + np.arange(length)[None, :]
    return torch.from_numpy(np.asarray(data[index], dtype=np.int64))


class SeededSampler:
    """A sampler whose seeded generator is its whole data position (see the module docstring)."""

    def __init__(self, batch_size: int, seed: int) -> None:
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


class WindowSampler(SeededSampler):
    """Draws (batch_size // world_size, seq_len + 1) windows for this rank."""

    def __init__(
        self,
        data: np.ndarray,
        batch_size: int,
        seq_len: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        check_enough_tokens(len(data), seq_len, "training")
        if batch_size % world_size:
            raise ParrotError(
                f"train.batch_size={batch_size} must be divisible by the {world_size} processes."
            )
        super().__init__(batch_size, seed)
        self.data, self.seq_len = data, seq_len
        self.rank, self.world_size = rank, world_size

    def next(self) -> torch.Tensor:
        """The next global batch's rows belonging to this rank."""
        high = len(self.data) - self.seq_len  # last valid start + 1
        offsets = torch.randint(0, high, (self.batch_size,), generator=self.generator)
        per_rank = self.batch_size // self.world_size
        mine = offsets[self.rank * per_rank : (self.rank + 1) * per_rank]
        return gather_windows(self.data, mine, self.seq_len + 1)


def fixed_batches(
    data: np.ndarray, n_batches: int, batch_size: int, seq_len: int, seed: int
) -> list[torch.Tensor]:
    """A fixed set of windows (e.g. for validation), identical on every call with `seed`."""
    check_enough_tokens(len(data), seq_len, "validation")
    sampler = WindowSampler(data, batch_size, seq_len, seed)
    return [sampler.next() for _ in range(n_batches)]
