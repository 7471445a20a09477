"""The RNN history lesson's recipe: a seeded toy translation task and GRU training runs.

The task: a source is a string of 5 to 80 letters from a 20-letter alphabet; its
translation maps each letter through a fixed (seeded) dictionary to a capital letter and
swaps every adjacent pair, a local reordering as between languages:

    source "abcde"  ->  dictionary "QHZMB"  ->  target "HQMZB"

Every target token depends on one source token two positions away at most, so a model
that can look at the source as it writes solves it at any length; a model that must
carry the whole source in one fixed vector loses it as the source grows.

The GRU models (`parrot.model.rnn`) train through `run_training` like every other
recipe: the same pair batches, the same seq2seq objective, the same loop. Byte tokens,
so the three models of the lesson read identical ids.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from parrot.data.pairs import (
    Pair,
    PairSampler,
    Seq2SeqTokens,
    encode_pairs,
    fixed_pair_batches,
    load_pairs,
    make_batch,
    tokens_from_specials,
)
from parrot.model.rnn import GRUEncoderDecoder, RNNConfig, build_rnn, greedy_decode
from parrot.rundir import save_weights
from parrot.training.config import TrainConfig
from parrot.training.loop import Hook
from parrot.training.objectives_seq2seq import seq2seq_loss
from parrot.training.seq2seq import PairsSpec, pairs_tokenizer
from parrot.training.session import Job, Run, TrainResult, run_training
from parrot.utils.seed import seed_everything

ALPHABET = "abcdefghijklmnopqrst"
CAPITALS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def dictionary(seed: int) -> dict[str, str]:
    """The seeded one-to-one map from source letters to target capitals."""
    rng = random.Random(seed)
    return dict(zip(ALPHABET, rng.sample(CAPITALS, len(ALPHABET)), strict=True))


def translate(source: str, words: dict[str, str]) -> str:
    """Map every letter, then swap each adjacent pair (a trailing odd letter stays)."""
    mapped = [words[ch] for ch in source]
    for i in range(0, len(mapped) - 1, 2):
        mapped[i], mapped[i + 1] = mapped[i + 1], mapped[i]
    return "".join(mapped)


def toy_pairs(n: int, seed: int, min_len: int = 5, max_len: int = 80,
              dictionary_seed: int = 0) -> list[dict[str, str]]:
    """n {"source", "target"} records, source lengths uniform in [min_len, max_len]."""
    rng, words = random.Random(seed), dictionary(dictionary_seed)
    out = []
    for _ in range(n):
        source = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(min_len, max_len)))
        out.append({"source": source, "target": translate(source, words)})
    return out


def byte_tokenizer():
    """The byte tokenizer with <pad> <s> </s> <mask> (what all three models read)."""
    return pairs_tokenizer(PairsSpec(tokenizer="bytes"), [])


def build_gru_run(saved: dict | None, pairs: str, cfg: RNNConfig, train: TrainConfig,
                  max_len: int) -> Run:
    """The Run of one GRU model on the pairs file (the last 10% of pairs validate)."""
    if saved is not None:  # a resumed run keeps its settings
        cfg, train = RNNConfig.from_dict(saved["rnn"]), TrainConfig.from_dict(saved["train"])
    tokenizer = byte_tokenizer()
    tokens = tokens_from_specials(tokenizer.special_tokens)
    all_pairs = load_pairs(pairs)
    n_val = max(1, len(all_pairs) // 10)
    train_ex = encode_pairs(all_pairs[:-n_val], tokenizer.encode, max_len)
    val_ex = encode_pairs(all_pairs[-n_val:], tokenizer.encode, max_len)
    seed_everything(train.seed)
    model = build_rnn(dataclasses.replace(cfg, vocab_size=tokenizer.vocab_size))
    config = {"rnn": model.config.to_dict(), "train": train.to_dict(), "pairs": pairs,
              "seq2seq": dataclasses.asdict(tokens)}
    val_pairs = all_pairs[-n_val:]

    def finish(trained: nn.Module) -> dict:
        outputs = gru_generate(trained, tokenizer, tokens, [p.source for p in val_pairs])
        right = sum(o == p.target for o, p in zip(outputs, val_pairs, strict=True))
        return {"val_exact_match": right / len(val_pairs)}

    return Run(model, seq2seq_loss, PairSampler(train_ex, train.batch_size, tokens, train.seed),
               fixed_pair_batches(val_ex, train.batch_size, tokens), train, config, tokenizer,
               save_model=save_weights, metrics={"val_pairs": n_val}, finish=finish)


def train_gru(out: str | Path, pairs: str | Path, cfg: RNNConfig, train: TrainConfig,
              max_len: int = 96, hooks: Sequence[Hook] = (), resume: bool = False,
              show_progress: bool = True) -> TrainResult:
    """Train one GRU encoder-decoder on a pairs file through the shared training loop."""
    def build(saved: dict | None) -> Run:
        return build_gru_run(saved, str(Path(pairs).resolve()), cfg,
                             train.replace(objective="seq2seq_pairs"), max_len)

    return run_training(Job(Path(out), build, resume, hooks=hooks, show_progress=show_progress))


def gru_generate(model: GRUEncoderDecoder, tokenizer, tokens: Seq2SeqTokens,
                 sources: Sequence[str], max_len: int = 96, batch_size: int = 64,
                 capture: list[torch.Tensor] | None = None) -> list[str]:
    """Greedy translations of `sources`; a list as `capture` receives each batch's
    attention weights (B, T, S)."""
    model.eval()
    outputs = []
    for start in range(0, len(sources), batch_size):
        chunk = [(tokenizer.encode(s), []) for s in sources[start:start + batch_size]]
        batch = make_batch(chunk, tokens)
        ids, alpha = greedy_decode(model, batch.src, batch.src_mask, tokens.start_id,
                                   tokens.eos_id, max_len)
        if capture is not None and alpha is not None:
            capture.append(alpha)
        outputs += [tokenizer.decode(row) for row in ids]
    return outputs


def token_accuracy(output: str, target: str) -> float:
    """The fraction of target positions the output has right (extra output counts
    against it: the denominator is the longer of the two)."""
    right = sum(a == b for a, b in zip(output, target, strict=False))
    return right / max(len(output), len(target), 1)


def by_length(pairs: Sequence[Pair], outputs: Sequence[str], edges: Sequence[int]
              ) -> list[dict]:
    """Exact match and token accuracy per source-length bucket [edges[i], edges[i+1])."""
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        mine = [(p, o) for p, o in zip(pairs, outputs, strict=True) if lo <= len(p.source) < hi]
        if not mine:
            continue
        rows.append({"lo": lo, "hi": hi - 1, "pairs": len(mine),
                     "exact_match": sum(o == p.target for p, o in mine) / len(mine),
                     "token_accuracy": sum(token_accuracy(o, p.target) for p, o in mine)
                     / len(mine)})
    return rows
