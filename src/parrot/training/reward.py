"""Reward models from ranked pairs: training (Bradley–Terry), loading and scoring.

    base MODEL ──resolve──▶ transformer (+ LoRA) ──▶ RewardModel (scalar head, last token)
    prefs.jsonl ──render──▶ (chosen, rejected) rows ──▶ -log σ(r_w - r_l) ──▶ the training loop

A reward run directory holds config.json (a "finetune" section naming the base and the
method, a "reward" section, "train"), tokenizer.json and reward.safetensors: every
trainable tensor (the head, plus LoRA's A and B or, for full fine-tuning, the whole
backbone). It is not a language model: loading it as one (`parrot chat runs/rm`) is a
ParrotError; `load_reward_model` rebuilds it from its base, and `score_pairs` /
`score_answers` give rewards. A run resumes bit-exactly like any other (run_training).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from parrot.data.preference import (
    Messages,
    PreferenceSampler,
    collate_rows,
    encode_completion,
    encode_preferences,
    fixed_preference_batches,
    load_preferences,
)
from parrot.errors import ParrotError
from parrot.hub.resolve import resolve_model
from parrot.model.reward import RewardModel
from parrot.rundir import REWARD_WEIGHTS, is_reward_dir, read_config, read_metrics
from parrot.training.config import TrainConfig, override
from parrot.training.finetune import (
    FinetuneConfig,
    prepare_model,
    resumed_settings,
    split_examples,
)
from parrot.training.loop import Hook
from parrot.training.objectives_pref import bradley_terry, reward_pairs
from parrot.training.session import Job, Run, TrainResult, model_spec, run_training
from parrot.utils.atomic import atomic_path
from parrot.utils.seed import seed_everything

# What a reward-model run trains with unless --set changes it.
REWARD_TRAIN = TrainConfig(steps=100, batch_size=4, lr=1e-3, min_lr=1e-4, warmup=10,
                           weight_decay=0.0, eval_every=25, checkpoint_every=25, log_every=5)


def check_method(cfg: FinetuneConfig, what: str) -> None:
    if cfg.method not in ("full", "lora"):
        raise ParrotError(f"{what} trains with --method full or lora, got {cfg.method!r}.")


def save_reward(root: Path, model: nn.Module) -> None:
    """reward.safetensors: the trainable tensors of a RewardModel, written atomically."""
    from safetensors.torch import save_file

    tensors = {n: p.detach().contiguous().cpu() for n, p in model.named_parameters()
               if p.requires_grad}
    with atomic_path(Path(root) / REWARD_WEIGHTS) as tmp:
        save_file(tensors, str(tmp))


def train_reward(model: str | Path, data: str | Path, out: str | Path,
                 cfg: FinetuneConfig | None = None, overrides: Sequence[str] = (),
                 resume: bool = False, hooks: Sequence[Hook] = (),
                 show_progress: bool = True, home: str | Path | None = None) -> TrainResult:
    """Train a reward model on the ranked pairs in `data` into run directory `out`.

    cfg: method (full or lora) and its settings; overrides: `train.FIELD=VALUE` on
    REWARD_TRAIN. result.metrics holds val_accuracy (held-out pairs ranked right) and the
    parameter counts; resume=True continues the run bit-exactly with its saved settings.
    """
    cfg = cfg or FinetuneConfig()
    check_method(cfg, "A reward model")
    build = partial(build_reward, spec=model_spec(model), data=data, cfg=cfg,
                    overrides=overrides, home=home)
    return with_last_validation(run_training(Job(Path(out), build, resume, overrides=overrides,
                                                 hooks=hooks, show_progress=show_progress)))


def with_last_validation(result: TrainResult) -> TrainResult:
    """The result with the last validation row's metrics (val_accuracy, val_rewards/...)."""
    rows = [r for r in read_metrics(result.run_dir) if "val_loss" in r]
    if rows:
        result.metrics.update({k: v for k, v in rows[-1].items() if k.startswith("val_")
                               and k != "val_loss"})
    return result


def build_reward(saved: dict[str, Any] | None, spec: str, data: str | Path,
                 cfg: FinetuneConfig, overrides: Sequence[str],
                 home: str | Path | None = None) -> Run:
    """The Run: base + adapter + scalar head, Bradley–Terry batches of the ranked pairs."""
    if saved is not None:
        cfg, train, data = resumed_settings(saved, spec, data)
    else:
        train = override({"train": REWARD_TRAIN}, overrides)["train"]
    pairs = load_preferences(data)  # bad data fails before the model loads
    base, tokenizer, info = resolve_model(spec, train.device, home=home)
    template = cfg.template or getattr(info, "chat_template", None) or "chatml"
    max_len = min(cfg.max_len, base.config.context_length - 1)
    examples = encode_preferences(pairs, tokenizer, template, max_len)
    train_ex, val_ex = split_examples(examples, cfg.val_fraction, train.seed)
    seed_everything(train.seed)
    model = RewardModel(prepare_model(base, cfg))
    val = fixed_preference_batches(val_ex, train.eval_batch_size or train.batch_size)
    config = {"finetune": {**dataclasses.asdict(cfg), "base": spec, "template": template,
                           "data": str(Path(data).resolve())},
              "reward": {"head": "last_token"}, "train": train.to_dict()}
    return Run(model, bradley_terry, PreferenceSampler(train_ex, train.batch_size, train.seed),
               val, train, config, tokenizer, save_reward, eval_at_start=True)


def load_reward_model(run_dir: str | Path, device: str = "cpu",
                      home: str | Path | None = None) -> tuple[RewardModel, Any, str, int]:
    """(reward model in eval mode, tokenizer, template, max_len) of a reward run directory."""
    from safetensors.torch import load_file

    if not is_reward_dir(run_dir):
        raise ParrotError(f"{run_dir} is not a reward model (it needs config.json and "
                          f"{REWARD_WEIGHTS}); train one with parrot reward train.")
    settings = dict(read_config(run_dir)["finetune"])
    base, template = settings.pop("base"), settings.pop("template")
    settings.pop("data")
    cfg = FinetuneConfig(**settings)
    backbone, tokenizer, _ = resolve_model(base, device, home=home)
    model = RewardModel(prepare_model(backbone, cfg))
    state = load_file(str(Path(run_dir) / REWARD_WEIGHTS))
    missing, unexpected = model.load_state_dict(state, strict=False)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    if unexpected or trainable & set(missing):
        raise ParrotError(f"{run_dir}/{REWARD_WEIGHTS} does not fit its base model {base}; "
                          "train the reward model again.")
    return model.eval(), tokenizer, template, min(cfg.max_len, backbone.config.context_length - 1)


@dataclass(frozen=True)
class PairScores:
    """rewards (N, 2): r(x, chosen), r(x, rejected) per pair; accuracy: share chosen > rejected."""

    rewards: torch.Tensor
    accuracy: float


@torch.no_grad()
def score_pairs(model: RewardModel, examples: list, batch_size: int = 8) -> PairScores:
    """Rewards of encoded (chosen, rejected) examples, in order."""
    rows = [torch.stack(reward_pairs(model, batch), dim=1)
            for batch in fixed_preference_batches(examples, batch_size)]
    rewards = torch.cat(rows)
    return PairScores(rewards, float((rewards[:, 0] > rewards[:, 1]).float().mean()))


@torch.no_grad()
def score_answers(model: RewardModel, tokenizer: Any, template: str,
                  items: Sequence[tuple[Messages, str]], max_len: int = 512,
                  batch_size: int = 8) -> torch.Tensor:
    """r(x, y) for each (prompt messages, answer text), (N,): the scoring GRPO reuses."""
    rows = [encode_completion(prompt, [{"role": "assistant", "content": answer}],
                              tokenizer, template, max_len) for prompt, answer in items]
    out = []
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        tokens, _, lengths = collate_rows(chunk)
        out.append(model(tokens, lengths))
    return torch.cat(out) if out else torch.zeros(0)


def score_file(run_dir: str | Path, data: str | Path,
               home: str | Path | None = None) -> PairScores:
    """Rewards and accuracy of the reward model in `run_dir` on the pairs in `data`."""
    pairs = load_preferences(data)
    model, tokenizer, template, max_len = load_reward_model(run_dir, home=home)
    examples = [tuple(encode_completion(p.prompt, answer, tokenizer, template, max_len)
                      for answer in (p.chosen, p.rejected)) for p in pairs]  # every line kept
    return score_pairs(model, examples)
