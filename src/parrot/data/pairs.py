"""Source/target pairs for sequence-to-sequence training, and their padded batches.

A JSONL file holds one pair per line, e.g. {"source": "forty-two", "target": "42"}; the
field names are choosable. A target is learned by teacher forcing:

    decoder input  = <s> y_1 ... y_n            labels = y_1 ... y_n </s>

so position t predicts token t+1 of the target and the last one predicts the end. Source
padding is hidden by a mask; target padding carries the label IGNORE (no loss).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from parrot.data.batches import SeededSampler
from parrot.data.corpus import jsonl_records
from parrot.errors import ParrotError

IGNORE = -100  # label of target padding: F.cross_entropy's ignore_index


@dataclass(frozen=True)
class Pair:
    source: str
    target: str
    where: str  # "file line N", for messages about this pair


@dataclass(frozen=True)
class Seq2SeqTokens:
    """The ids a seq2seq model works with: the decoder's first input, the end of a target,
    the source padding and (for denoising) the mask that replaces a span."""

    start_id: int
    eos_id: int
    pad_id: int
    mask_id: int | None = None


SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<mask>")


def tokens_from_specials(specials: dict[str, int]) -> Seq2SeqTokens:
    """Seq2SeqTokens from a tokenizer's special tokens (<pad>, <s>, </s>, <mask>)."""
    missing = [s for s in SPECIAL_TOKENS[:3] if s not in specials]
    if missing:
        raise ParrotError(f"The tokenizer lacks the special token(s) {', '.join(missing)} a "
                          "seq2seq model needs; train it with parrot seq2seq train.")
    return Seq2SeqTokens(specials["<s>"], specials["</s>"], specials["<pad>"],
                         specials.get("<mask>"))


def load_pairs(path: str | Path, source_field: str = "source",
               target_field: str = "target") -> list[Pair]:
    """Every pair of a JSONL file; ParrotError naming the file and line of a bad line."""
    path = Path(path)
    if not path.is_file():
        raise ParrotError(f"No pairs file at {path}; pass a .jsonl file with one "
                          f"{{{source_field!r}: ..., {target_field!r}: ...}} object per line.")
    pairs = [_parse_record(record, where, source_field, target_field)
             for where, record in jsonl_records(path)]
    if not pairs:
        raise ParrotError(f"{path} holds no pairs; add one JSON object per line.")
    return pairs


def _parse_record(record: Any, where: str, source_field: str, target_field: str) -> Pair:
    if not isinstance(record, dict):
        raise ParrotError(f"{where} must be a JSON object with {source_field!r} and "
                          f"{target_field!r}.")
    for name, flag in ((source_field, "--source-field"), (target_field, "--target-field")):
        if not isinstance(record.get(name), str):
            found = ", ".join(sorted(map(repr, record))) or "none"
            problem = "is not a string" if name in record else "is missing"
            raise ParrotError(f"{where}: the field {name!r} {problem} (fields there: {found}); "
                              f"fix the line or name the right field with {flag}.")
    return Pair(record[source_field], record[target_field], where)


def encode_pairs(pairs: Sequence[Pair], encode: Callable[[str], list[int]],
                 max_len: int) -> list[tuple[list[int], list[int]]]:
    """(source ids, target ids) per pair; a target needs one slot more for </s> or <s>."""
    out = []
    for pair in pairs:
        src, tgt = encode(pair.source), encode(pair.target)
        if not src:
            raise ParrotError(f"{pair.where}: the source is empty; give it some text.")
        if len(src) > max_len or len(tgt) + 1 > max_len:
            raise ParrotError(f"{pair.where}: the pair has {len(src)} source and {len(tgt)} "
                              f"target tokens, more than the model's context of {max_len} "
                              "allows; shorten it or raise model.context_length.")
        out.append((src, tgt))
    return out


@dataclass
class PairBatch:
    """src (B, S) ids and src_mask (B, S) bool; tgt_in (B, T) decoder inputs; labels (B, T)
    with IGNORE on padding."""

    src: torch.Tensor
    src_mask: torch.Tensor
    tgt_in: torch.Tensor
    labels: torch.Tensor

    def to(self, device: str | torch.device, non_blocking: bool = False) -> PairBatch:
        return PairBatch(*(t.to(device, non_blocking=non_blocking) for t in
                           (self.src, self.src_mask, self.tgt_in, self.labels)))

    @property
    def target_tokens(self) -> int:
        return int((self.labels != IGNORE).sum())


def make_batch(examples: Sequence[tuple[Sequence[int], Sequence[int]]],
               tokens: Seq2SeqTokens) -> PairBatch:
    """Pad (source, target) id lists into a PairBatch for teacher forcing."""
    S = max(len(s) for s, _ in examples)
    T = max(len(t) for _, t in examples) + 1
    B = len(examples)
    src = torch.full((B, S), tokens.pad_id, dtype=torch.long)
    src_mask = torch.zeros(B, S, dtype=torch.bool)
    tgt_in = torch.full((B, T), tokens.pad_id, dtype=torch.long)
    labels = torch.full((B, T), IGNORE, dtype=torch.long)
    for i, (s, t) in enumerate(examples):
        src[i, : len(s)] = torch.tensor(list(s), dtype=torch.long)
        src_mask[i, : len(s)] = True
        tgt_in[i, : len(t) + 1] = torch.tensor([tokens.start_id, *t], dtype=torch.long)
        labels[i, : len(t) + 1] = torch.tensor([*t, tokens.eos_id], dtype=torch.long)
    return PairBatch(src, src_mask, tgt_in, labels)


class PairSampler(SeededSampler):
    """Random batches of pairs from a seeded generator (its state is the data position)."""

    def __init__(self, examples: Sequence[tuple[list[int], list[int]]], batch_size: int,
                 tokens: Seq2SeqTokens, seed: int) -> None:
        if not examples:
            raise ParrotError("There are no training pairs; give more data.")
        super().__init__(batch_size, seed)
        self.examples, self.tokens = list(examples), tokens
        # The loop counts tokens per step as batch_size * seq_len: use the mean target size.
        self.seq_len = max(1, round(sum(len(t) + 1 for _, t in examples) / len(examples)))

    def next(self) -> PairBatch:
        index = torch.randint(0, len(self.examples), (self.batch_size,), generator=self.generator)
        return make_batch([self.examples[i] for i in index.tolist()], self.tokens)


def fixed_pair_batches(examples: Sequence[tuple[list[int], list[int]]], batch_size: int,
                       tokens: Seq2SeqTokens) -> list[PairBatch]:
    """Every example once, in order, in batches (validation)."""
    return [make_batch(examples[i : i + batch_size], tokens)
            for i in range(0, len(examples), batch_size)]
