"""Teacher logits cached on disk, so a second distillation run need not run the teacher.

What is stored. Training windows are aligned: window w is tokens[w*T : w*T + T + 1] of the
training shard, a fixed set whatever the seed. For each window the cache keeps, at every
one of its T positions, the teacher's k most likely ids at the distillation temperature
tau, their log-probabilities log q_i (float16) and the log of the rest's mass,
log r = log(1 - sum_{i in S} q_i) (float32), where q = softmax(z / tau) over the whole
vocabulary and S is the set of the k ids.

The approximation (top-k plus one tail bucket). The distributions are compared on k + 1
outcomes: each id in S, and "any other id" (mass r for the teacher, r_s for the student):

    KL~ = sum_{i in S} q_i (log q_i - log q_s,i) + r (log r - log r_s)
    q_s = softmax(student / tau),  r_s = 1 - sum_{i in S} q_s,i

This is the exact KL of the two distributions with the tail ids merged into one, so
KL~ <= KL (merging outcomes never increases a KL) with equality when the tail holds one
id or no mass; the head's targets are the teacher's true probabilities, not renormalised
ones, and the student is still pushed to put mass r on the tail as a whole. The tail
bucket matters: SmolLM2's top 64 ids hold 86% of the mass at tau = 1 but only 23% at
tau = 2 (measured on the embedded corpus, benchmarks/bench_finetune.py --part cache).
A cache is made for one temperature (tau is part of its key). The same KL~ is used in the
run that fills the cache and the runs that read it, so they train identically.

Where. DIR/<key>/ with key = sha256(teacher weights and config, training tokens, window
length, k, tau); one directory may serve several teachers and datasets. Each newly
computed batch of windows is one shard file `shard-<hash of its windows>.pt`, written
atomically, so an interrupted run leaves only whole shards behind.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from parrot.data.batches import SeededSampler, check_enough_tokens, gather_windows
from parrot.utils.atomic import atomic_path, atomic_write_json


@dataclass(frozen=True)
class WindowBatch:
    """tokens (B, T+1) and the aligned window index of each row, (B,)."""

    tokens: torch.Tensor
    windows: torch.Tensor

    def to(self, device: Any, non_blocking: bool = False) -> WindowBatch:
        return WindowBatch(self.tokens.to(device, non_blocking=non_blocking), self.windows)


class AlignedWindowSampler(SeededSampler):
    """Random windows among the fixed ones starting at multiples of seq_len (resumable)."""

    def __init__(self, data: np.ndarray, batch_size: int, seq_len: int, seed: int) -> None:
        check_enough_tokens(len(data), seq_len, "training")
        super().__init__(batch_size, seed)
        self.data, self.seq_len = data, seq_len
        self.n_windows = (len(data) - 1) // seq_len

    def next(self) -> WindowBatch:
        windows = torch.randint(0, self.n_windows, (self.batch_size,), generator=self.generator)
        return WindowBatch(gather_windows(self.data, windows * self.seq_len, self.seq_len + 1),
                           windows)


def model_fingerprint(model: nn.Module) -> str:
    """sha256 of a model's config and every tensor of its state (names, shapes, bytes)."""
    digest = hashlib.sha256()
    digest.update(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def cache_key(teacher_hash: str, tokens: np.ndarray, seq_len: int, k: int,
              temperature: float) -> str:
    """The cache's identity: teacher, training tokens, window length, k and temperature."""
    digest = hashlib.sha256(teacher_hash.encode())
    digest.update(np.ascontiguousarray(tokens, dtype=np.int64).tobytes())
    digest.update(f"seq_len={seq_len},k={k},temperature={float(temperature)!r}".encode())
    return digest.hexdigest()[:24]


TopK = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # log q (.., k), ids (.., k), log r (..)


def top_k_targets(logits: torch.Tensor, k: int, temperature: float) -> TopK:
    """(log q_i of the k likeliest ids as float16, their ids as int32, log r as float32)."""
    log_q = F.log_softmax(logits.float() / temperature, dim=-1)
    head, ids = log_q.topk(min(k, logits.shape[-1]), dim=-1)             # (..., k)
    log_tail = torch.log1p(-head.exp().sum(-1).clamp(max=1.0))           # (...,) may be -inf
    return head.half(), ids.int(), log_tail


def top_k_kl(student_logits: torch.Tensor, log_q: torch.Tensor, ids: torch.Tensor,
             log_tail: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over positions of KL~ = sum_S q_i (log q_i - log q_s,i) + r (log r - log r_s).

    student_logits (..., V); log_q, ids (..., k) and log_tail (...) from `top_k_targets`.
    """
    log_s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    head_s = log_s.gather(-1, ids.long())                                # (..., k)
    log_q = log_q.float()
    head = (log_q.exp() * (log_q - head_s)).sum(-1)                      # (...,)
    log_tail_s = torch.log1p(-head_s.exp().sum(-1).clamp(max=1.0 - 1e-6))
    r = log_tail.exp()
    tail = torch.where(r > 0, r * (log_tail - log_tail_s), torch.zeros_like(r))
    return (head + tail).mean()


class TeacherCache:
    """Top-k teacher logits per aligned window, read from and added to DIR/<key>/."""

    def __init__(self, root: str | Path, key: str, k: int, temperature: float,
                 meta: dict[str, Any]) -> None:
        self.dir, self.k, self.temperature = Path(root) / key, k, temperature
        self.dir.mkdir(parents=True, exist_ok=True)
        if not (self.dir / "meta.json").exists():
            atomic_write_json(self.dir / "meta.json",
                              {"k": k, "temperature": temperature, **meta})
        self.entries: dict[int, TopK] = {}
        for shard in sorted(self.dir.glob("shard-*.pt")):
            saved = torch.load(shard, weights_only=True)
            for row, w in enumerate(saved["windows"].tolist()):
                self.entries[w] = (saved["log_q"][row], saved["ids"][row], saved["tail"][row])

    def fetch(self, windows: torch.Tensor, inputs: torch.Tensor, teacher: nn.Module) -> TopK:
        """(log q, ids, log r) of these windows, (B, T, k), (B, T, k), (B, T); the teacher
        runs on the missing ones (inputs (B, T) are their tokens), stored as one shard."""
        listed = windows.tolist()
        missing = sorted({w for w in listed if w not in self.entries})
        if missing:
            rows = [listed.index(w) for w in missing]
            with torch.no_grad():
                logits = teacher(inputs[rows])                           # (M, T, V)
            self._write(missing, *(t.cpu() for t in top_k_targets(logits, self.k,
                                                                  self.temperature)))
        return tuple(torch.stack([self.entries[w][part] for w in listed]).to(inputs.device)
                     for part in range(3))

    def _write(self, windows: list[int], log_q: torch.Tensor, ids: torch.Tensor,
               tail: torch.Tensor) -> None:
        name = hashlib.sha256(repr(windows).encode()).hexdigest()[:16]
        path = self.dir / f"shard-{name}.pt"  # by content: concurrent runs never clash
        with atomic_path(path) as tmp:
            torch.save({"windows": torch.tensor(windows), "log_q": log_q, "ids": ids,
                        "tail": tail}, tmp)
        for row, w in enumerate(windows):
            self.entries[w] = (log_q[row], ids[row], tail[row])
