"""Pretraining (next-token, masked LM, denoising) as a recipe: preset → shards → Run.

`prepare_run` (main rank only) trains or loads the tokenizer, writes the token shards,
`config.json` and `tokenizer.json`. `build_pretraining` then builds everything from the
run directory, so a fresh run, a resumed run and every data-parallel rank start from the
same files; `parrot.training.session.run_training` runs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

from parrot.data.batches import WindowSampler, check_enough_tokens, fixed_batches
from parrot.data.corpus import load_texts
from parrot.data.pairs import SPECIAL_TOKENS
from parrot.data.shards import build_shards, open_shard, split_texts
from parrot.errors import ParrotError
from parrot.model import ModelConfig, build_model
from parrot.rundir import RunDir, write_config
from parrot.tokenizer import Tokenizer
from parrot.training.config import DataSpec, TrainConfig
from parrot.training.distributed import dist_info_from_env
from parrot.training.loop import Hook
from parrot.training.objectives import OBJECTIVES, objective_for
from parrot.training.recipes import Recipe, apply_overrides, get_recipe
from parrot.training.session import Job, Run, TrainResult, run_training
from parrot.utils.seed import seed_everything

EOS = "<|endoftext|>"
# A masked-LM run's new tokenizer also gets BERT's special tokens.
MLM_SPECIALS = ("[MASK]", "[CLS]", "[SEP]", "[PAD]")


def build_tokenizer(spec: DataSpec, train_texts: list[str], path: str | Path | None,
                    specials: Sequence[str] = (EOS,)) -> Tokenizer:
    """The given tokenizer, the 256-byte one, or BPE trained on the training texts."""
    if path is not None:
        return Tokenizer.load(path)
    if spec.tokenizer == "bytes":
        return Tokenizer.train([], 256)
    return Tokenizer.train(train_texts, spec.vocab_size, special_tokens=list(specials))


def check_objective(model_cfg: ModelConfig, train_cfg: TrainConfig) -> None:
    """ParrotError for an unknown objective or one the model's attention cannot serve."""
    if train_cfg.objective not in OBJECTIVES:
        raise ParrotError(f"Unknown train.objective {train_cfg.objective!r}; "
                          f"choose one of: {', '.join(OBJECTIVES)}.")
    if (train_cfg.objective == "denoise") != model_cfg.is_encoder_decoder:
        raise ParrotError("The denoise objective and encoder-decoder models go together; use "
                          "--preset seq2seq-tiny (or parrot seq2seq train for pairs), or "
                          "another objective with a decoder-only model.")
    if train_cfg.objective == "mlm" and model_cfg.causal:
        raise ParrotError("The mlm objective needs a bidirectional model; use --preset "
                          "bert-tiny or add --set model.causal=false.")


def _encoder(tokenizer: Tokenizer, spec: DataSpec, sample: str):
    """Raw UTF-8 bytes are the ids of a pure byte tokenizer (much faster than encode())."""
    if spec.tokenizer == "bytes" and tokenizer.vocab_size == 256:
        probe = sample[:2000]
        if tokenizer.encode(probe) == list(probe.encode("utf-8")):
            return lambda text: list(text.encode("utf-8"))
    return tokenizer.encode


def check_context(model_cfg: ModelConfig, train_cfg: TrainConfig) -> int:
    """The window length, which the model's positions must cover."""
    seq_len = train_cfg.seq_len or model_cfg.context_length
    if seq_len > model_cfg.context_length:
        raise ParrotError(
            f"train.seq_len={seq_len} is longer than model.context_length="
            f"{model_cfg.context_length} allows; raise model.context_length or lower train.seq_len."
        )
    return seq_len


def prepare_run(
    out: Path, recipe: Recipe, preset: str, data: Sequence[str | Path] | None,
    text_field: str = "text", tokenizer_path: str | Path | None = None,
) -> None:
    """Write config.json, tokenizer.json and the token shards of a new run into `out`."""
    model_cfg, train_cfg, spec = recipe
    if spec.needs_path and not data:
        raise ParrotError(f"Preset {preset} needs its text file: pass --data PATH "
                          "(e.g. --data ../shared/data/tinyshakespeare.txt).")
    seq_len = check_context(model_cfg, train_cfg)  # before the slow part: tokenizer training
    check_objective(model_cfg, train_cfg)
    texts = load_texts(list(data) if data else None, text_field=text_field)
    train_texts, val_texts = split_texts(texts, spec.val_fraction, spec.split)
    extra = {"mlm": MLM_SPECIALS, "denoise": SPECIAL_TOKENS}.get(train_cfg.objective, ())
    tokenizer = build_tokenizer(spec, train_texts, tokenizer_path, (EOS, *extra))
    objective_for(train_cfg.objective, tokenizer)  # e.g. mlm without [MASK]: fail early
    model_cfg = model_cfg.replace(vocab_size=tokenizer.vocab_size)
    encode = _encoder(tokenizer, spec, train_texts[0] if train_texts else "")
    train_ids, val_ids = build_shards(train_texts, val_texts, encode, tokenizer.vocab_size,
                                      RunDir(out).data, separator=tokenizer.eos_id)
    check_enough_tokens(len(train_ids), seq_len, "training")
    check_enough_tokens(len(val_ids), seq_len, "validation")
    tokenizer.save(out)
    write_config(out, {"preset": preset, "model": model_cfg.to_dict(),
                       "train": train_cfg.to_dict(), "data": spec.to_dict()})


def build_pretraining(out: Path, saved: dict) -> Run:
    """The Run of the pretraining run prepared in `out` (model, windows, objective)."""
    model_cfg, cfg = ModelConfig.from_dict(saved["model"]), TrainConfig.from_dict(saved["train"])
    seq_len = check_context(model_cfg, cfg)
    check_objective(model_cfg, cfg)
    seed_everything(cfg.seed)
    model = build_model(model_cfg)  # a Transformer, or an EncoderDecoder (denoise)
    info, run, tokenizer = dist_info_from_env(), RunDir(out), Tokenizer.load(out)
    sampler = WindowSampler(open_shard(run.data / "train.npy"), cfg.batch_size, seq_len,
                            cfg.seed, info.rank, info.world_size)
    val = fixed_batches(open_shard(run.data / "val.npy"), cfg.eval_iters,
                        cfg.eval_batch_size or cfg.batch_size, seq_len, cfg.seed + 1)
    return Run(model, objective_for(cfg.objective, tokenizer), sampler, val, cfg, saved,
               tokenizer)


def train(
    preset: str, out: str | Path, data: Sequence[str | Path] | None = None,
    overrides: Sequence[str] = (), resume: bool = False, text_field: str = "text",
    tokenizer: str | Path | None = None, hooks: Sequence[Hook] = (),
    show_progress: bool = True,
) -> TrainResult:
    """Train recipe `preset` (with `--set` style overrides) into run directory `out`;
    resume=True continues the run in `out` from its last checkpoint."""
    from parrot.training.vlm import VLM_RECIPES, train_vlm

    if preset in VLM_RECIPES:  # staged: language model, alignment, answers
        return train_vlm(preset, out, overrides, resume, hooks, show_progress)
    prepare = None
    if not resume:
        recipe = apply_overrides(get_recipe(preset), overrides)
        prepare = partial(prepare_run, recipe=recipe, preset=preset, data=data,
                          text_field=text_field, tokenizer_path=tokenizer)
    job = Job(Path(out), partial(build_pretraining, Path(out)), resume, prepare, overrides,
              hooks, show_progress)
    return run_training(job)
