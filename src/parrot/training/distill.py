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
or, with a teacher cache, read back as top-k log-probabilities (`parrot.training.teacher_cache`, which
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

from parrot.data.batches import WindowSampler, fixed_batches
from parrot.data.corpus import load_texts
from parrot.data.shards import build_shards, open_shard, split_texts
from parrot.errors import ParrotError
from parrot.hub.resolve import resolve_model
from parrot.model import ModelConfig, Transformer
from parrot.model.presets import PRESETS, get_preset
from parrot.rundir import RunDir, is_run_dir
from parrot.training import teacher_cache as tc
from parrot.training.config import TrainConfig, override
from parrot.training.loop import Hook
from parrot.training.objectives import next_token, next_token_loss
from parrot.training.session import Job, Run, TrainResult, model_spec, run_training
from parrot.utils.seed import seed_everything


@dataclass(frozen=True)
class DistillConfig:
    """temperature T > 0 softens both distributions; alpha in [0, 1] weights the soft term."""

    temperature: float = 2.0
    alpha: float = 0.5
    val_fraction: float = 0.1
    top_k: int = 64  # teacher logits kept per position by a teacher cache

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ParrotError(f"--temperature must be positive, got {self.temperature}.")
        if not 0 <= self.alpha <= 1:
            raise ParrotError(f"--alpha must lie in [0, 1], got {self.alpha}.")
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


def make_distill_objective(teacher: nn.Module, cfg: DistillConfig, cache: Any = None):
    """objective(student, batch) for the training loop: batch holds windows (B, T+1).

    Without a cache the batch is the windows and the teacher runs on them; with a
    TeacherCache it is a WindowBatch and the soft term is T^2 * KL~, the top-k + tail-bucket
    KL of the teacher's cached top-k logits.
    """
    teacher.eval().requires_grad_(False)

    def distill_objective(student: nn.Module, batch: Any) -> tuple[torch.Tensor, dict]:
        tokens = batch if cache is None else batch.tokens
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        logits = student(inputs)                                   # (B, T, V)
        hard = next_token_loss(logits, targets)
        if cfg.alpha == 0:  # hard labels only: no teacher needed
            return hard, {"loss": hard.detach(), "hard": hard.detach()}
        if cache is None:
            with torch.no_grad():
                teacher_logits = teacher(inputs)                   # (B, T, V)
            kl = soft_kl(logits, teacher_logits, cfg.temperature)
        else:
            kl = tc.top_k_kl(logits, *cache.fetch(batch.windows, inputs, teacher), cfg.temperature)
        soft = cfg.temperature**2 * kl
        loss = cfg.alpha * soft + (1 - cfg.alpha) * hard
        return loss, {"loss": loss.detach(), "soft": soft.detach(), "hard": hard.detach()}

    return distill_objective


def same_tokenizer(a: Any, b: Any) -> bool:
    """Same vocabulary: equal size and equal bytes for every id."""
    return a.vocab_size == b.vocab_size and all(
        a.token_bytes(i) == b.token_bytes(i) for i in range(a.vocab_size))


# What a distillation run trains with unless --set changes it (train.seq_len: the window,
# cut to what both models' positions cover).
DISTILL_TRAIN = TrainConfig(steps=200, batch_size=8, lr=3e-3, min_lr=3e-4, warmup=20,
                            eval_every=50, checkpoint_every=50, seq_len=128)


def distill(teacher: str | Path, student: str, out: str | Path,
            data: Sequence[str | Path] | None = None, cfg: DistillConfig = DistillConfig(),
            overrides: Sequence[str] = (), resume: bool = False,
            teacher_cache: str | Path | None = None, hooks: Sequence[Hook] = (),
            show_progress: bool = True, home: str | Path | None = None) -> TrainResult:
    """Train `student` on `teacher`'s soft targets over `data` (default: embedded corpus).

    student: a model preset (fresh weights; `model.FIELD=VALUE` overrides apply) or a run
    directory. overrides: also `train.FIELD=VALUE` on DISTILL_TRAIN. teacher_cache: a
    directory of cached top-k teacher logits, filled and reused. resume: continue the run
    in `out` with its saved settings (the others are ignored). final_val_loss is the
    hard-label next-token loss on the held-out windows.
    """
    build = partial(build_distill, out=Path(out), teacher=teacher, student=student, data=data,
                    cfg=cfg, overrides=overrides, teacher_cache=teacher_cache, home=home)
    return run_training(Job(Path(out), build, resume, overrides=overrides, hooks=hooks,
                            show_progress=show_progress))


def build_distill(saved: dict[str, Any] | None, out: Path, teacher: str | Path, student: str,
                  data: Sequence[str | Path] | None, cfg: DistillConfig,
                  overrides: Sequence[str], teacher_cache: str | Path | None,
                  home: str | Path | None = None) -> Run:
    """The Run: a student, windows of the tokenized text, the distillation objective.

    A resumed run rebuilds its student from config.json (its weights then come from the
    checkpoint) and reopens its own shards.
    """
    run = RunDir(out)
    if saved is not None:
        cfg, train, teacher_cache = _resumed(saved, teacher)
    else:
        texts = load_texts(list(data) if data else None)  # fails before the models load
        sections = override({"train": DISTILL_TRAIN, **_student_section(student)}, overrides)
        train = sections["train"]
    teacher_model, tokenizer, _ = resolve_model(teacher, train.device, home=home)
    seed_everything(train.seed)
    if saved is not None:
        student_model = Transformer(ModelConfig.from_dict(saved["model"]))
        train_ids, val_ids = open_shard(run.data / "train.npy"), open_shard(run.data / "val.npy")
    else:
        student_model = build_student(student, sections.get("model"), tokenizer, train.device)
        train_texts, val_texts = split_texts(texts, cfg.val_fraction)
        train_ids, val_ids = build_shards(train_texts, val_texts, partial(
            tokenizer.encode, disallowed_special=()),  # training text: "<|x|>" is plain text
            tokenizer.vocab_size, run.data, separator=tokenizer.eos_id)
    seq_len = min(train.seq_len or student_model.config.context_length,
                  student_model.config.context_length, teacher_model.config.context_length)
    val = fixed_batches(val_ids, train.eval_iters, train.eval_batch_size or train.batch_size,
                        seq_len, train.seed + 1)
    sampler, objective = _sampler_and_objective(teacher_model, train_ids, seq_len, cfg, train,
                                                teacher_cache)
    cache = None if teacher_cache is None else str(Path(teacher_cache).resolve())
    config = {"model": student_model.config.to_dict(), "train": train.to_dict(),
              "distill": {**asdict(cfg), "teacher": model_spec(teacher), "student": str(student),
                          "teacher_cache": cache}}
    return Run(student_model, objective, sampler, val, train, config, tokenizer,
               eval_objective=next_token)


def _student_section(student: str) -> dict[str, Any]:
    """{"model": the preset's config} for a preset student ({} for a run directory)."""
    if is_run_dir(student):
        return {}
    if student not in PRESETS:
        raise ParrotError(f"--student {student!r} is neither a run directory nor a model "
                          f"preset ({', '.join(sorted(PRESETS))}).")
    return {"model": get_preset(student)}


def build_student(student: str, model_cfg: ModelConfig | None, teacher_tokenizer: Any,
                  device: str) -> nn.Module:
    """A fresh student of `model_cfg` with the teacher's vocabulary, or the run directory
    `student` (model_cfg None), which must share the teacher's tokenizer."""
    if model_cfg is not None:
        return Transformer(model_cfg.replace(vocab_size=teacher_tokenizer.vocab_size))
    model, tokenizer, _ = resolve_model(student, device)
    if not same_tokenizer(tokenizer, teacher_tokenizer):
        raise ParrotError(f"The student {student} and the teacher use different tokenizers "
                          f"({tokenizer.vocab_size} vs {teacher_tokenizer.vocab_size} "
                          "tokens); distillation needs the same vocabulary.")
    return model.train()


def _resumed(saved: dict[str, Any], teacher: str | Path
             ) -> tuple[DistillConfig, TrainConfig, str | None]:
    """The saved settings of a distillation run, after checking the teacher matches."""
    settings = dict(saved["distill"])
    if settings.pop("teacher") != model_spec(teacher):
        raise ParrotError("This run was distilled from another teacher; resume it with "
                          "--teacher as it was started.")
    settings.pop("student")
    cache = settings.pop("teacher_cache", None)
    return DistillConfig(**settings), TrainConfig.from_dict(saved["train"]), cache


def _sampler_and_objective(teacher: nn.Module, train_ids: Any, seq_len: int,
                           cfg: DistillConfig, train: TrainConfig,
                           teacher_cache: str | Path | None):
    """Random windows and on-the-fly teacher, or aligned windows and the teacher cache."""
    if teacher_cache is None:
        return (WindowSampler(train_ids, train.batch_size, seq_len, train.seed),
                make_distill_objective(teacher, cfg))
    key = tc.cache_key(tc.model_fingerprint(teacher), train_ids, seq_len, cfg.top_k,
                       cfg.temperature)
    cache = tc.TeacherCache(teacher_cache, key, cfg.top_k, cfg.temperature,
                            {"seq_len": seq_len})
    sampler = tc.AlignedWindowSampler(train_ids, train.batch_size, seq_len, train.seed)
    return sampler, make_distill_objective(teacher, cfg, cache)


__all__ = ["DISTILL_TRAIN", "DistillConfig", "distill", "distillation_loss",
           "make_distill_objective", "same_tokenizer", "soft_kl"]
