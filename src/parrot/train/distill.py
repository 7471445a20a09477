"""Knowledge distillation: a student learns a teacher's softened next-token distribution.

    q_T(z)_i = exp(z_i / T) / sum_j exp(z_j / T)
    loss = alpha * T^2 * KL(q_T(teacher) || q_T(student)) + (1 - alpha) * CE(student, labels)

KL is summed over the vocabulary and averaged over token positions; CE is the usual
next-token cross-entropy at T = 1.

The T^2 convention (Hinton, Vinyals & Dean 2015): the gradient of the soft term with
respect to the student's logits is (q_T(student) - q_T(teacher)) / T, and for large T it
shrinks roughly like 1/T^2 compared with the hard term. Multiplying by T^2 keeps the two
terms' gradient magnitudes comparable when T changes, so alpha means the same at every
temperature. The reported `soft` metric is the T^2-scaled term.

Teacher and student must share a tokenizer: the KL compares distributions over the same
ids. Teacher logits are computed on the fly under `torch.no_grad` (the teacher is frozen).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from parrot.errors import ParrotError
from parrot.train.objectives import next_token, next_token_loss


@dataclass(frozen=True)
class DistillConfig:
    """temperature T > 0 softens both distributions; alpha in [0, 1] weights the soft term."""

    temperature: float = 2.0
    alpha: float = 0.5
    seq_len: int = 128
    val_fraction: float = 0.1

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ParrotError(f"--temperature must be positive, got {self.temperature}.")
        if not 0 <= self.alpha <= 1:
            raise ParrotError(f"--alpha must lie in [0, 1], got {self.alpha}.")
        if self.seq_len < 1:
            raise ParrotError(f"--seq-len must be at least 1, got {self.seq_len}.")


def soft_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
            temperature: float) -> torch.Tensor:
    """Mean over positions of KL(q_T(teacher) || q_T(student)) = sum_i q_t,i (log q_t,i - log q_s,i).

    Logits (..., V); computed in fp32 with log-softmax for stability.
    """
    log_s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    kl = (log_t.exp() * (log_t - log_s)).sum(-1)   # (...,)
    return kl.mean()


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      targets: torch.Tensor, temperature: float,
                      alpha: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, soft, hard): loss = alpha * soft + (1 - alpha) * hard, soft = T^2 * KL."""
    soft = temperature**2 * soft_kl(student_logits, teacher_logits, temperature)
    hard = next_token_loss(student_logits, targets)
    return alpha * soft + (1 - alpha) * hard, soft, hard


def make_distill_objective(teacher: nn.Module, cfg: DistillConfig):
    """objective(student, windows) for the training loop; windows (B, T+1)."""
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)

    def distill_objective(student: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, dict]:
        inputs, targets = batch[:, :-1], batch[:, 1:]
        logits = student(inputs)                                   # (B, T, V)
        if cfg.alpha == 0:  # hard labels only: no teacher forward needed
            loss = next_token_loss(logits, targets)
            return loss, {"loss": loss.detach(), "hard": loss.detach()}
        with torch.no_grad():
            teacher_logits = teacher(inputs)                       # (B, T, V)
        loss, soft, hard = distillation_loss(logits, teacher_logits, targets,
                                             cfg.temperature, cfg.alpha)
        return loss, {"loss": loss.detach(), "soft": soft.detach(), "hard": hard.detach()}

    return distill_objective


def same_tokenizer(a: Any, b: Any) -> bool:
    """Same vocabulary: equal size and equal bytes for every id."""
    if a.vocab_size != b.vocab_size:
        return False
    return all(a.token_bytes(i) == b.token_bytes(i) for i in range(a.vocab_size))


@dataclass(frozen=True)
class DistillResult:
    run_dir: Path
    steps: int
    final_val_loss: float  # hard-label next-token loss on the held-out windows


def build_student(student: str, teacher_tokenizer: Any, overrides: Sequence[str],
                  device: str) -> tuple[nn.Module, Any]:
    """A fresh student from a model preset (the teacher's vocabulary), or a run directory."""
    from parrot.model import Transformer
    from parrot.model.presets import PRESETS, get_preset
    from parrot.rundir import is_run_dir, load_model

    if Path(student).is_dir() and is_run_dir(student):
        if overrides:
            raise ParrotError("--set changes a fresh preset student; a run-directory student "
                              "keeps its architecture.")
        model, tokenizer, _ = load_model(student, device)
        if not same_tokenizer(tokenizer, teacher_tokenizer):
            raise ParrotError(f"The student {student} and the teacher use different tokenizers "
                              f"({tokenizer.vocab_size} vs {teacher_tokenizer.vocab_size} "
                              "tokens); distillation needs the same vocabulary.")
        return model.train(), tokenizer
    if student not in PRESETS:
        raise ParrotError(f"--student {student!r} is neither a run directory nor a model "
                          f"preset ({', '.join(sorted(PRESETS))}).")
    changes = _parse_overrides(overrides)
    cfg = get_preset(student, **{**changes, "vocab_size": teacher_tokenizer.vocab_size})
    return Transformer(cfg).to(device), teacher_tokenizer


def _parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    from parrot.model import ModelConfig
    from parrot.train.config import field_types, parse_value

    hints = field_types(ModelConfig)
    out = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip().removeprefix("model.")
        if not sep or key not in hints:
            raise ParrotError(f"--set {item!r}: expected model_field=value with a field of "
                              f"ModelConfig ({', '.join(sorted(hints))}).")
        out[key] = parse_value(text.strip(), hints[key], key)
    return out


def distill(teacher: str | Path, student: str, out: str | Path,
            data: Sequence[str | Path] | None = None, cfg: DistillConfig = DistillConfig(),
            train: Any = None, overrides: Sequence[str] = (),
            show_progress: bool = True) -> DistillResult:
    """Train `student` on `teacher`'s soft targets over `data` (default: embedded corpus)."""
    from parrot.data.batches import WindowSampler, fixed_batches
    from parrot.data.corpus import load_texts
    from parrot.data.shards import build_shards, split_texts
    from parrot.rundir import RunDir, write_config
    from parrot.train.config import TrainConfig
    from parrot.train.finetune import resolve_base
    from parrot.train.loop import Loop, run_loop
    from parrot.train.optim import build_adamw
    from parrot.utils.seed import seed_everything

    train = train or TrainConfig(steps=200, batch_size=8, lr=3e-3, min_lr=3e-4, warmup=20)
    out = Path(out)
    if (out / "config.json").exists():
        raise ParrotError(f"{out} already holds a run; choose another --out.")
    if train.threads:
        torch.set_num_threads(train.threads)
    texts = load_texts(list(data) if data else None)
    teacher_model, tokenizer, _ = resolve_base(teacher, train.device)
    seed_everything(train.seed)
    student_model, _ = build_student(student, tokenizer, overrides, train.device)
    seq_len = min(cfg.seq_len, student_model.config.context_length,
                  teacher_model.config.context_length)
    train_texts, val_texts = split_texts(texts, cfg.val_fraction)
    run = RunDir(out)
    train_ids, val_ids = build_shards(train_texts, val_texts, tokenizer.encode,
                                      tokenizer.vocab_size, run.data, separator=tokenizer.eos_id)
    sampler = WindowSampler(train_ids, train.batch_size, seq_len, train.seed)
    val = fixed_batches(val_ids, train.eval_iters, train.eval_batch_size or train.batch_size,
                        seq_len, train.seed + 1)
    optimizer = build_adamw(student_model, train.lr, train.weight_decay,
                            (train.beta1, train.beta2))
    loop = Loop(student_model, student_model, optimizer, sampler, val, train,
                make_distill_objective(teacher_model, cfg), run, device=train.device,
                show_progress=show_progress, resumable=False, eval_objective=next_token)
    tokenizer.save(out)
    teacher_name = str(Path(teacher).resolve()) if Path(teacher).exists() else str(teacher)
    write_config(out, {"model": student_model.config.to_dict(), "train": train.to_dict(),
                       "distill": {**asdict(cfg), "teacher": teacher_name,
                                   "student": str(student)}})
    state = run_loop(loop)
    from parrot.train.loop import evaluate

    return DistillResult(out, state.step, evaluate(loop))


__all__ = ["DistillConfig", "DistillResult", "distill", "distillation_loss", "make_distill_objective",
           "same_tokenizer", "soft_kl"]
