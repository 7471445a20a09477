"""Supervised seq2seq training on JSONL pairs, as a Python API (`parrot seq2seq train`).

    pairs.jsonl → split (last val_fraction = validation) → tokenizer with <pad> <s> </s>
    <mask> → encoder-decoder from the recipe → the shared training loop with the pairs
    objective → a run directory that `parrot seq2seq generate` reads.

The run directory is the usual one (config.json, tokenizer.json, model.safetensors,
metrics.jsonl); config.json adds a "seq2seq" section with the special ids and "pairs",
the data file (which `resume` reads again). After the last step the validation pairs are
generated greedily and their exact-match accuracy is logged as `val_exact_match`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

from torch import nn

from parrot.data.pairs import (
    SPECIAL_TOKENS,
    Pair,
    PairSampler,
    Seq2SeqTokens,
    encode_pairs,
    fixed_pair_batches,
    load_pairs,
    tokens_from_specials,
)
from parrot.errors import ParrotError
from parrot.hub.resolve import resolve_model
from parrot.infer import Engine, SamplingParams
from parrot.model import EncoderDecoder, ModelConfig, build_model
from parrot.rundir import is_run_dir, read_config
from parrot.tokenizer import Tokenizer
from parrot.tokenizer.pretokenize import PATTERNS
from parrot.training.config import TrainConfig, override
from parrot.training.loop import Hook
from parrot.training.objectives_seq2seq import seq2seq_loss
from parrot.training.recipes import get_recipe
from parrot.training.session import Job, Run, TrainResult, run_training
from parrot.utils.seed import seed_everything


@dataclass(frozen=True)
class PairsSpec:
    """Where pairs come from and how they become ids (the "data" section of a pairs run).

    tokenizer: "bytes" (256 byte ids + the 4 specials) or "bpe" (trained on the training
    pairs' sources and targets, vocab_size in all).
    """

    source_field: str = "source"
    target_field: str = "target"
    tokenizer: Literal["bytes", "bpe"] = "bpe"
    vocab_size: int = 512
    val_fraction: float = 0.1
    kind: str = "pairs"

    def __post_init__(self) -> None:
        if self.tokenizer not in ("bytes", "bpe"):
            raise ParrotError(f"data.tokenizer must be 'bytes' or 'bpe', got {self.tokenizer!r}.")
        if not 0 < self.val_fraction < 1:
            raise ParrotError(f"data.val_fraction must lie in (0, 1), got {self.val_fraction}.")


# GPT-2's split with one digit per chunk (as Llama 2 and SmolLM2 do): merges never glue
# digits together, so a number is written digit by digit whatever the vocabulary learned.
DIGIT_SPLIT_PATTERN = PATTERNS["gpt2"].replace(r" ?\p{N}+", r" ?\p{N}")


def pairs_tokenizer(spec: PairsSpec, pairs: Sequence[Pair]) -> Tokenizer:
    """The byte tokenizer plus seq2seq specials, or BPE learned on the training pairs."""
    if spec.tokenizer == "bytes":
        return Tokenizer.train([], 256 + len(SPECIAL_TOKENS), special_tokens=SPECIAL_TOKENS)
    texts = [text for p in pairs for text in (p.source, p.target)]
    return Tokenizer.train(texts, spec.vocab_size, pattern=DIGIT_SPLIT_PATTERN,
                           special_tokens=SPECIAL_TOKENS)


def split_pairs(pairs: list[Pair], val_fraction: float) -> tuple[list[Pair], list[Pair]]:
    """The last val_fraction of the pairs (at least one) is validation."""
    if len(pairs) < 2:
        raise ParrotError("Seq2seq training needs at least 2 pairs (training and validation).")
    n_val = min(len(pairs) - 1, max(1, round(val_fraction * len(pairs))))
    return pairs[:-n_val], pairs[-n_val:]


def train_pairs(preset: str, out: str | Path, data: str | Path,
                source_field: str = "source", target_field: str = "target",
                overrides: Sequence[str] = (), resume: bool = False,
                hooks: Sequence[Hook] = (), show_progress: bool = True) -> TrainResult:
    """Train recipe `preset` (an encoder-decoder) on the pairs in `data` into `out`.

    overrides: `model.`, `train.` and `data.` (PairsSpec) settings; resume=True continues
    the run in `out` bit-identically. result.metrics: val_exact_match, val_pairs.
    """
    build = partial(build_pairs, out=Path(out), preset=preset, data=data, overrides=overrides,
                    spec=PairsSpec(source_field=source_field, target_field=target_field))
    return run_training(Job(Path(out), build, resume, overrides=overrides, hooks=hooks,
                            show_progress=show_progress))


def build_pairs(saved: dict | None, out: Path, preset: str, data: str | Path,
                spec: PairsSpec, overrides: Sequence[str]) -> Run:
    """The Run: an encoder-decoder, pair batches, the pairs objective, exact match at the end.

    A resumed run takes its settings, data path and tokenizer from its run directory.
    """
    if saved is None:
        model_cfg, train_cfg, _ = get_recipe(preset)
        if not model_cfg.is_encoder_decoder:
            raise ParrotError(f"Preset {preset} is decoder-only; seq2seq training needs an "
                              "encoder-decoder preset such as seq2seq-tiny.")
        sections = override({"model": model_cfg, "data": spec,
                             "train": train_cfg.replace(objective="seq2seq_pairs")}, overrides)
        model_cfg, train_cfg, spec = sections["model"], sections["train"], sections["data"]
        data = str(Path(data).resolve())
    else:
        model_cfg, train_cfg = (ModelConfig.from_dict(saved["model"]),
                                TrainConfig.from_dict(saved["train"]))
        spec, data = PairsSpec(**saved["data"]), saved["pairs"]
    train_set, val_set = split_pairs(load_pairs(data, spec.source_field, spec.target_field),
                                     spec.val_fraction)
    tokenizer = pairs_tokenizer(spec, train_set) if saved is None else Tokenizer.load(out)
    model_cfg = model_cfg.replace(vocab_size=tokenizer.vocab_size)
    tokens = tokens_from_specials(tokenizer.special_tokens)
    train_ex = encode_pairs(train_set, tokenizer.encode, model_cfg.context_length)
    val_ex = encode_pairs(val_set, tokenizer.encode, model_cfg.context_length)
    seed_everything(train_cfg.seed)
    model = build_model(model_cfg)
    config = {"preset": preset, "model": model_cfg.to_dict(), "train": train_cfg.to_dict(),
              "data": dataclasses.asdict(spec), "pairs": data, "seq2seq": dataclasses.asdict(tokens)}

    def finish(trained: nn.Module) -> dict:
        return {"val_exact_match": exact_match(trained, tokenizer, [p.source for p in val_set],
                                               [p.target for p in val_set], tokens)}

    return Run(model, seq2seq_loss, PairSampler(train_ex, train_cfg.batch_size, tokens,
                                                train_cfg.seed),
               fixed_pair_batches(val_ex, train_cfg.eval_batch_size or train_cfg.batch_size,
                                  tokens), train_cfg, config, tokenizer,
               metrics={"val_pairs": len(val_set)}, finish=finish)


def generate_targets(model: EncoderDecoder, tokenizer: Tokenizer, tokens: Seq2SeqTokens,
                     sources: Sequence[str], params: SamplingParams | None = None,
                     batch_size: int = 64) -> list[str]:
    """The target text the engine generates for each source (greedy unless `params` say
    otherwise), `batch_size` requests decoding together."""
    engine = Engine(model, tokenizer, max_batch=max(1, min(batch_size, len(sources))),
                    eos_ids={tokens.eos_id}, start_id=tokens.start_id)
    params = params or SamplingParams(temperature=0.0)
    return [c.text for c in engine.generate_batch(sources, params)]


def exact_match(model: EncoderDecoder, tokenizer: Tokenizer, sources: Sequence[str],
                targets: Sequence[str], tokens: Seq2SeqTokens) -> float:
    """The fraction of sources whose greedy generation equals the target exactly."""
    if not sources:
        return 0.0
    outputs = generate_targets(model, tokenizer, tokens, sources)
    return sum(o == t for o, t in zip(outputs, targets, strict=True)) / len(sources)


def load_seq2seq(path: str | Path, device: str = "cpu"
                 ) -> tuple[EncoderDecoder, Tokenizer, Seq2SeqTokens]:
    """(model, tokenizer, special ids) of an encoder-decoder MODEL (a run directory or a
    Hugging Face BART folder; any MODEL `resolve_model` takes)."""
    model, tokenizer, info = resolve_model(path, device)
    if not isinstance(model, EncoderDecoder):
        raise ParrotError(f"{path} holds a decoder-only model; seq2seq generation needs an "
                          "encoder-decoder (use parrot generate for this one).")
    ids = read_config(path).get("seq2seq") if is_run_dir(path) else None
    if ids:
        return model, tokenizer, Seq2SeqTokens(**ids)
    hf = info.extra
    if "decoder_start_token_id" not in hf:
        return model, tokenizer, tokens_from_specials(tokenizer.special_tokens)
    try:
        return model, tokenizer, Seq2SeqTokens(hf["decoder_start_token_id"], hf["eos_token_id"],
                                               hf["pad_token_id"])
    except KeyError as err:
        raise ParrotError(f"{path}/config.json lacks {err.args[0]!r}, which generation "
                          "needs.") from None
