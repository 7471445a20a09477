"""The training pipeline as a Python API: recipe → data shards → model → loop → run directory.

`prepare_run` (main rank only) trains or loads the tokenizer, writes the token shards,
`config.json` and `tokenizer.json`. `train` then builds everything from the run directory,
so a fresh run, a resumed run and every data-parallel rank start from the same files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from parrot.data.batches import WindowSampler, check_enough_tokens, fixed_batches
from parrot.data.corpus import load_texts
from parrot.data.pairs import SPECIAL_TOKENS
from parrot.data.shards import build_shards, open_shard, split_texts
from parrot.errors import ParrotError
from parrot.model import ModelConfig, build_model
from parrot.rundir import RunDir, read_config, read_metrics, truncate_metrics, write_config
from parrot.tokenizer import Tokenizer
from parrot.train.checkpoint import load_checkpoint, set_rng_state
from parrot.train.config import DataSpec, TrainConfig
from parrot.train.distributed import (
    DistInfo,
    barrier,
    dist_info_from_env,
    init_distributed,
    rank_device,
    shutdown,
    wrap_model,
)
from parrot.train.loop import Loop, LoopState, run_loop
from parrot.train.objectives import OBJECTIVES, objective_for
from parrot.train.optim import build_adamw
from parrot.train.recipes import Recipe, apply_overrides, get_recipe
from parrot.utils.seed import seed_everything

EOS = "<|endoftext|>"
# A masked-LM run's new tokenizer also gets BERT's special tokens.
MLM_SPECIALS = ("[MASK]", "[CLS]", "[SEP]", "[PAD]")


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    steps: int
    final_val_loss: float | None
    train_time_s: float


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
    check_context(model_cfg, train_cfg)  # before the slow part: tokenizer training
    check_objective(model_cfg, train_cfg)
    texts = load_texts(list(data) if data else None, text_field=text_field)
    train_texts, val_texts = split_texts(texts, spec.val_fraction, spec.split)
    extra = {"mlm": MLM_SPECIALS, "denoise": SPECIAL_TOKENS}.get(train_cfg.objective, ())
    tokenizer = build_tokenizer(spec, train_texts, tokenizer_path, (EOS, *extra))
    objective_for(train_cfg.objective, tokenizer)  # e.g. mlm without [MASK]: fail early
    model_cfg = model_cfg.replace(vocab_size=tokenizer.vocab_size)
    seq_len = check_context(model_cfg, train_cfg)
    encode = _encoder(tokenizer, spec, train_texts[0] if train_texts else "")
    train_ids, val_ids = build_shards(train_texts, val_texts, encode, tokenizer.vocab_size,
                                      RunDir(out).data, separator=tokenizer.eos_id)
    check_enough_tokens(len(train_ids), seq_len, "training")
    check_enough_tokens(len(val_ids), seq_len, "validation")
    tokenizer.save(out)
    write_config(out, {"preset": preset, "model": model_cfg.to_dict(),
                       "train": train_cfg.to_dict(), "data": spec.to_dict()})


def load_run_configs(out: Path) -> tuple[ModelConfig, TrainConfig]:
    config = read_config(out)
    return ModelConfig.from_dict(config["model"]), TrainConfig.from_dict(config["train"])


def build_loop(out: Path, info: DistInfo, show_progress: bool) -> tuple[Loop, ModelConfig]:
    """Model, optimizer, samplers and loop of the run prepared in `out`."""
    model_cfg, cfg = load_run_configs(out)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = rank_device(info, cfg.device)
    seq_len = check_context(model_cfg, cfg)
    seed_everything(cfg.seed)
    raw = build_model(model_cfg).to(device)  # a Transformer, or an EncoderDecoder (denoise)
    optimizer = build_adamw(raw, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2))
    model = wrap_model(raw, info, device)
    if cfg.compile:
        model = torch.compile(model)
    run = RunDir(out)
    sampler = WindowSampler(open_shard(run.data / "train.npy"), cfg.batch_size, seq_len,
                            cfg.seed, info.rank, info.world_size)
    val = fixed_batches(open_shard(run.data / "val.npy"), cfg.eval_iters,
                        cfg.eval_batch_size or cfg.batch_size, seq_len, cfg.seed + 1)
    check_objective(model_cfg, cfg)
    objective = objective_for(cfg.objective, Tokenizer.load(out))
    loop = Loop(model, raw, optimizer, sampler, val, cfg, objective, run,
                info, device, show_progress)
    return loop, model_cfg


def resume_state(loop: Loop) -> LoopState:
    """Restore the checkpoint into the loop's parts and return where it stopped."""
    state = load_checkpoint(loop.run.checkpoint, loop.raw, loop.optimizer)
    loop.sampler.load_state_dict(state["sampler"])
    if loop.dist.is_main:
        truncate_metrics(loop.run.root, state["step"])
    set_rng_state(state["rng"])  # last: nothing may draw numbers after this
    extra = state["extra"]
    return LoopState(state["step"], extra.get("tokens", 0), extra.get("train_time", 0.0))


def _start_dir(out: Path, resume: bool) -> None:
    run = RunDir(out)
    if resume and not run.checkpoint.is_file():
        raise ParrotError(f"{out} has no checkpoint to resume; start it without --resume.")
    if not resume and run.config.exists():
        raise ParrotError(f"{out} already holds a run; pass --resume to continue it "
                          "or choose another --out.")


def train(
    preset: str, out: str | Path, data: Sequence[str | Path] | None = None,
    overrides: Sequence[str] = (), resume: bool = False, text_field: str = "text",
    tokenizer: str | Path | None = None, show_progress: bool = True,
) -> TrainResult:
    """Train `preset` (with `--set` style overrides) into run directory `out`."""
    out, info = Path(out), dist_info_from_env()
    if resume and overrides:
        raise ParrotError("--set cannot change a resumed run; resume it without --set.")
    init_distributed(info)
    try:
        if info.is_main:
            _start_dir(out, resume)
            if not resume:
                recipe = apply_overrides(get_recipe(preset), overrides)
                out.mkdir(parents=True, exist_ok=True)
                prepare_run(out, recipe, preset, data, text_field, tokenizer)
        barrier(info)  # the other ranks read what the main rank prepared
        loop, _ = build_loop(out, info, show_progress)
        state = resume_state(loop) if resume else LoopState()
        state = run_loop(loop, state)
        barrier(info)
    finally:
        shutdown(info)
    return TrainResult(out, state.step, _last_val(out), state.train_time)


def _last_val(out: Path) -> float | None:
    vals = [r["val_loss"] for r in read_metrics(out) if "val_loss" in r]
    return vals[-1] if vals else None
