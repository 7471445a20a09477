"""Direct Preference Optimization: tune a policy on ranked pairs against a frozen reference.

    base MODEL ──resolve──▶ reference (MODEL itself, or --ref) ──▶ log π_ref of every pair,
                            computed once and cached on disk (training/logprobs.py)
               ──LoRA / full──▶ policy ──▶ DPO loss (objectives_pref.py) ──▶ the training loop

With LoRA the adapter starts at B = 0, so the policy equals MODEL at step 0 and the
reference can be computed from the same weights before the adapter is added; a full
fine-tune likewise starts from MODEL. The run directory is a fine-tuning run directory
(adapter.safetensors + adapter_config.json for LoRA, model.safetensors for full) with a
"dpo" section beside "finetune" in config.json, so chat, serve, merge and parrot.load take
it as they take any fine-tuned model. The reference cache lives in RUN/ref_cache/ unless
`ref_cache` names a shared directory; a resumed run reads it back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from parrot.data.preference import (
    PreferenceSampler,
    encode_preferences,
    fixed_preference_batches,
    load_preferences,
)
from parrot.errors import ParrotError
from parrot.hub.resolve import resolve_model
from parrot.training.config import TrainConfig, override
from parrot.training.distill import same_tokenizer
from parrot.training.finetune import (
    FinetuneConfig,
    model_saver,
    prepare_model,
    resumed_settings,
    run_config,
    split_examples,
)
from parrot.training.logprobs import reference_logprobs
from parrot.training.loop import Hook
from parrot.training.objectives_pref import DPOConfig, make_dpo_objective
from parrot.training.reward import check_method, with_last_validation
from parrot.training.session import Job, Run, TrainResult, model_spec, run_training
from parrot.utils.seed import seed_everything

# What a DPO run trains with unless --set changes it (LoRA-sized learning rate).
DPO_TRAIN = TrainConfig(steps=100, batch_size=4, lr=5e-4, min_lr=5e-5, warmup=10,
                        weight_decay=0.0, eval_every=25, checkpoint_every=25, log_every=5)


def dpo(model: str | Path, data: str | Path, out: str | Path,
        cfg: FinetuneConfig | None = None, dpo_cfg: DPOConfig | None = None,
        reference: str | Path | None = None, ref_cache: str | Path | None = None,
        overrides: Sequence[str] = (), resume: bool = False, hooks: Sequence[Hook] = (),
        show_progress: bool = True, home: str | Path | None = None) -> TrainResult:
    """Tune MODEL with DPO on the ranked pairs in `data` into run directory `out`.

    reference: the frozen π_ref (default MODEL); ref_cache: where its log-probs are cached
    (default RUN/ref_cache). overrides: `train.FIELD=VALUE` on DPO_TRAIN. resume=True
    continues the run bit-exactly with its saved settings. Metrics use TRL's names
    (rewards/chosen, rewards/margins, ..., and val_ prefixed on held-out pairs).
    """
    cfg, dpo_cfg = cfg or FinetuneConfig(), dpo_cfg or DPOConfig()
    check_method(cfg, "DPO")
    build = partial(build_dpo, out=Path(out), spec=model_spec(model), data=data, cfg=cfg,
                    dpo_cfg=dpo_cfg, reference=reference, ref_cache=ref_cache,
                    overrides=overrides, show_progress=show_progress, home=home)
    return with_last_validation(run_training(Job(Path(out), build, resume, overrides=overrides,
                                                 hooks=hooks, show_progress=show_progress)))


def build_dpo(saved: dict[str, Any] | None, out: Path, spec: str, data: str | Path,
              cfg: FinetuneConfig, dpo_cfg: DPOConfig, reference: str | Path | None,
              ref_cache: str | Path | None, overrides: Sequence[str], show_progress: bool,
              home: str | Path | None = None) -> Run:
    """The Run: reference log-probs (cached), then the policy and its DPO batches."""
    if saved is not None:
        cfg, train, data = resumed_settings(saved, spec, data)
        settings = dict(saved["dpo"])
        reference, ref_cache = settings.pop("reference"), settings.pop("ref_cache")
        dpo_cfg = DPOConfig(**settings)
    else:
        train = override({"train": DPO_TRAIN}, overrides)["train"]
    pairs = load_preferences(data)  # bad data fails before the model loads
    base, tokenizer, info = resolve_model(spec, train.device, home=home)
    template = cfg.template or getattr(info, "chat_template", None) or "chatml"
    examples = encode_preferences(pairs, tokenizer, template,
                                  min(cfg.max_len, base.config.context_length - 1))
    train_ex, val_ex = split_examples(examples, cfg.val_fraction, train.seed)
    ref_model = base if reference is None else _reference(reference, tokenizer, train.device,
                                                          home)
    cache = Path(ref_cache) if ref_cache is not None else out / "ref_cache"
    batch = train.eval_batch_size or train.batch_size
    # Validation pairs in the batches validation will use: at step 0 their rewards are 0.
    ref_train, ref_val = (reference_logprobs(ref_model, part, cache, batch, show_progress,
                                             train.device) if part else None
                          for part in (train_ex, val_ex))
    del ref_model
    seed_everything(train.seed)
    policy = prepare_model(base, cfg)
    val = fixed_preference_batches(val_ex, batch, ref_val) if val_ex else []
    sampler = PreferenceSampler(train_ex, train.batch_size, train.seed, ref_train)
    config = {**run_config(cfg, train, spec, template, data, policy),
              "dpo": {**dataclasses.asdict(dpo_cfg),
                      "reference": None if reference is None else model_spec(reference),
                      "ref_cache": str(cache.resolve())}}
    return Run(policy, make_dpo_objective(dpo_cfg), sampler, val, train, config, tokenizer,
               model_saver(cfg, spec, {"template": template}), eval_at_start=True)


def _reference(reference: str | Path, tokenizer: Any, device: str,
               home: str | Path | None) -> Any:
    """A reference model other than MODEL; it must share MODEL's tokenizer."""
    model, ref_tokenizer, _ = resolve_model(reference, device, home=home)
    if not same_tokenizer(ref_tokenizer, tokenizer):
        raise ParrotError(f"The reference {reference} uses another tokenizer than MODEL; DPO "
                          "compares log-probabilities of the same tokens, so give a reference "
                          "with MODEL's vocabulary.")
    return model


__all__ = ["DPO_TRAIN", "dpo"]
