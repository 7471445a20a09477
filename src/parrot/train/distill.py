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
ids. Teacher logits are computed on the fly under `torch.no_grad` (the teacher is frozen),
or, with a teacher cache, read back as top-k log-probabilities (`parrot.train.teacher_cache`, which
states the approximation) from an earlier run over the same teacher and data.

A run checkpoints the student, optimizer, sampler and RNG every `checkpoint_every` steps;
`resume=True` continues it bit-exactly from the last one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial
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
    top_k: int = 64  # teacher logits kept per position by a teacher cache

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ParrotError(f"--temperature must be positive, got {self.temperature}.")
        if not 0 <= self.alpha <= 1:
            raise ParrotError(f"--alpha must lie in [0, 1], got {self.alpha}.")
        if self.seq_len < 1:
            raise ParrotError(f"--seq-len must be at least 1, got {self.seq_len}.")
        if self.top_k < 1:
            raise ParrotError(f"--top-k must be at least 1, got {self.top_k}.")


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


def make_cached_objective(teacher: nn.Module, cache: Any, cfg: DistillConfig):
    """objective(student, WindowBatch) with the teacher's top-k logits from `cache`.

    loss = alpha * T^2 * KL~ + (1 - alpha) * CE, KL~ the top-k + tail-bucket KL.
    """
    from parrot.train.teacher_cache import top_k_kl

    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)

    def cached_objective(student: nn.Module, batch: Any) -> tuple[torch.Tensor, dict]:
        inputs, targets = batch.tokens[:, :-1], batch.tokens[:, 1:]
        logits = student(inputs)                                   # (B, T, V)
        hard = next_token_loss(logits, targets)
        if cfg.alpha == 0:
            return hard, {"loss": hard.detach(), "hard": hard.detach()}
        log_q, ids, log_tail = cache.fetch(batch.windows, inputs, teacher)
        soft = cfg.temperature**2 * top_k_kl(logits, log_q, ids, log_tail, cfg.temperature)
        loss = cfg.alpha * soft + (1 - cfg.alpha) * hard
        return loss, {"loss": loss.detach(), "soft": soft.detach(), "hard": hard.detach()}

    return cached_objective


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
            train: Any = None, overrides: Sequence[str] = (), show_progress: bool = True,
            resume: bool = False, teacher_cache: str | Path | None = None) -> DistillResult:
    """Train `student` on `teacher`'s soft targets over `data` (default: embedded corpus).

    teacher_cache: a directory of cached top-k teacher logits, filled and reused.
    resume: continue the run in `out` with its saved settings (the others are ignored).
    """
    from parrot.train.config import TrainConfig
    from parrot.train.loop import Loop, evaluate, run_loop
    from parrot.train.runner import resume_state

    out = Path(out)
    if resume:
        cfg, train, teacher_cache = _resumed(out, teacher)
    elif (out / "config.json").exists():
        raise ParrotError(f"{out} already holds a run; pass --resume to continue it or "
                          "choose another --out.")
    train = train or TrainConfig(steps=200, batch_size=8, lr=3e-3, min_lr=3e-4, warmup=20)
    if train.threads:
        torch.set_num_threads(train.threads)
    parts = _build(teacher, student, out, data, cfg, train, overrides, resume)
    teacher_model, student_model, tokenizer, train_ids, val_batches, seq_len = parts
    sampler, objective = _sampler_and_objective(teacher_model, train_ids, seq_len, cfg, train,
                                                teacher_cache)
    loop = Loop(student_model, student_model, _optimizer(student_model, train), sampler,
                val_batches, train, objective, _run_dir(out), device=train.device,
                show_progress=show_progress, eval_objective=next_token)
    if resume:
        state = resume_state(loop)
    else:
        tokenizer.save(out)
        write_run_config(out, student_model, train, cfg, teacher, student, teacher_cache)
        state = None
    state = run_loop(loop, state)
    return DistillResult(out, state.step, evaluate(loop))


def _run_dir(out: Path):
    from parrot.rundir import RunDir

    return RunDir(out)


def _optimizer(model: nn.Module, train: Any) -> torch.optim.Optimizer:
    from parrot.train.optim import build_adamw

    return build_adamw(model, train.lr, train.weight_decay, (train.beta1, train.beta2))


def _spec(path: str | Path) -> str:
    return str(Path(path).resolve()) if Path(path).exists() else str(path)


def write_run_config(out: Path, student_model: nn.Module, train: Any, cfg: DistillConfig,
                     teacher: str | Path, student: str,
                     teacher_cache: str | Path | None) -> None:
    from parrot.rundir import write_config

    cache = None if teacher_cache is None else str(Path(teacher_cache).resolve())
    write_config(out, {"model": student_model.config.to_dict(), "train": train.to_dict(),
                       "distill": {**asdict(cfg), "teacher": _spec(teacher),
                                   "student": str(student), "teacher_cache": cache}})


def _resumed(out: Path, teacher: str | Path) -> tuple[DistillConfig, Any, str | None]:
    """The saved settings of the distillation run in `out`, after checking them."""
    from parrot.rundir import RunDir, read_config
    from parrot.train.config import TrainConfig

    if not RunDir(out).checkpoint.is_file():
        raise ParrotError(f"{out} has no checkpoint to resume; start it without --resume.")
    saved = read_config(out)
    settings = dict(saved["distill"])
    if settings.pop("teacher") != _spec(teacher):
        raise ParrotError(f"{out} was distilled from another teacher; resume it with "
                          "--teacher as it was started.")
    settings.pop("student")
    cache = settings.pop("teacher_cache", None)
    return DistillConfig(**settings), TrainConfig.from_dict(saved["train"]), cache


def _build(teacher: str | Path, student: str, out: Path, data: Sequence[str | Path] | None,
           cfg: DistillConfig, train: Any, overrides: Sequence[str], resume: bool):
    """Teacher, student, tokenizer, training shard, validation batches and window length.

    A resumed run reopens its own shards and rebuilds its student from config.json (its
    weights then come from the checkpoint).
    """
    from parrot.data.batches import fixed_batches
    from parrot.data.corpus import load_texts
    from parrot.data.shards import build_shards, open_shard, split_texts
    from parrot.model import ModelConfig, Transformer
    from parrot.rundir import RunDir, read_config
    from parrot.train.finetune import resolve_base
    from parrot.utils.seed import seed_everything

    texts = None if resume else load_texts(list(data) if data else None)  # fails early
    teacher_model, tokenizer, _ = resolve_base(teacher, train.device)
    seed_everything(train.seed)
    run = RunDir(out)
    if resume:
        model_cfg = ModelConfig.from_dict(read_config(out)["model"])
        student_model = Transformer(model_cfg).to(train.device)
        train_ids, val_ids = open_shard(run.data / "train.npy"), open_shard(run.data / "val.npy")
    else:
        student_model, _ = build_student(student, tokenizer, overrides, train.device)
        train_texts, val_texts = split_texts(texts, cfg.val_fraction)
        train_ids, val_ids = build_shards(train_texts, val_texts, partial(
            tokenizer.encode, disallowed_special=()),  # training text: "<|x|>" is plain text
            tokenizer.vocab_size, run.data, separator=tokenizer.eos_id)
    seq_len = min(cfg.seq_len, student_model.config.context_length,
                  teacher_model.config.context_length)
    val = fixed_batches(val_ids, train.eval_iters, train.eval_batch_size or train.batch_size,
                        seq_len, train.seed + 1)
    return teacher_model, student_model, tokenizer, train_ids, val, seq_len


def _sampler_and_objective(teacher: nn.Module, train_ids: Any, seq_len: int,
                           cfg: DistillConfig, train: Any, teacher_cache: str | Path | None):
    """Random windows and on-the-fly teacher, or aligned windows and the teacher cache."""
    from parrot.data.batches import WindowSampler
    from parrot.train import teacher_cache as tc

    if teacher_cache is None:
        return (WindowSampler(train_ids, train.batch_size, seq_len, train.seed),
                make_distill_objective(teacher, cfg))
    key = tc.cache_key(tc.model_fingerprint(teacher), train_ids, seq_len, cfg.top_k,
                       cfg.temperature)
    cache = tc.TeacherCache(teacher_cache, key, cfg.top_k, cfg.temperature,
                            {"seq_len": seq_len})
    sampler = tc.AlignedWindowSampler(train_ids, train.batch_size, seq_len, train.seed)
    return sampler, make_cached_objective(teacher, cache, cfg)


__all__ = ["DistillConfig", "DistillResult", "distill", "distillation_loss",
           "make_cached_objective", "make_distill_objective", "same_tokenizer", "soft_kl"]
