"""Supervised fine-tuning data: conversations → token ids with an assistant-only loss mask.

Each JSONL line is one example, in either shape:

    {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}
    {"instruction": "...", "input": "... (optional)", "output": "..."}        (Alpaca)

Examples are rendered with the model's chat template by `parrot.chat.render_ids`, whose mask
is 1 exactly on the tokens of assistant turns: the model learns to answer, not to predict
the user. A batch pads examples on the right; padding carries no loss.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from parrot.chat import ChatTemplate, check_messages, render_ids
from parrot.data.batches import SeededSampler
from parrot.data.corpus import read_utf8
from parrot.errors import ParrotError

Example = tuple[list[int], list[int]]  # (ids, mask) of one rendered conversation


def record_to_messages(record: Any, where: str) -> list[dict[str, Any]]:
    """The messages of one JSONL record (OpenAI `messages` or Alpaca shape)."""
    if isinstance(record, dict) and "messages" in record:
        if not isinstance(record["messages"], list):
            raise ParrotError(f"{where}: 'messages' must be a list of {{role, content}} objects.")
        try:
            messages = check_messages(record["messages"])
        except ParrotError as err:
            raise ParrotError(f"{where}: {err.message}") from None
    elif isinstance(record, dict) and "instruction" in record and "output" in record:
        fields = [record["instruction"], record.get("input", ""), record["output"]]
        if not all(isinstance(f, str) for f in fields):
            raise ParrotError(f"{where}: instruction, input and output must be strings.")
        prompt = fields[0] + (f"\n\n{fields[1]}" if fields[1] else "")
        messages = [{"role": "user", "content": prompt},
                    {"role": "assistant", "content": fields[2]}]
    else:
        raise ParrotError(f"{where}: expected an object with 'messages' or with 'instruction' "
                          "and 'output'.")
    if not any(m["role"] == "assistant" for m in messages):
        raise ParrotError(f"{where}: the conversation has no assistant turn, so there is "
                          "nothing to learn; add the answer as a message with role 'assistant'.")
    return messages


def load_conversations(path: str | Path) -> list[list[dict[str, Any]]]:
    """Every conversation in a JSONL file; ParrotError naming file and line for bad lines."""
    path = Path(path)
    if not path.is_file():
        raise ParrotError(f"No data file at {path}; pass a .jsonl file of conversations.")
    conversations = []
    for number, line in enumerate(read_utf8(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as err:
            reason = getattr(err, "msg", "nested too deeply")
            raise ParrotError(f"{where}: not valid JSON ({reason}); each line must be one "
                              "JSON object.") from None
        conversations.append(record_to_messages(record, where))
    if not conversations:
        raise ParrotError(f"{path} holds no examples; add one JSON object per line.")
    return conversations


def encode_conversations(conversations: Sequence[list[dict[str, Any]]], tokenizer: Any,
                         template: str | ChatTemplate, max_len: int) -> list[Example]:
    """Render and tokenize; keep the first max_len + 1 ids (inputs plus shifted targets)."""
    examples = []
    for messages in conversations:
        ids, mask = render_ids(messages, tokenizer, template)
        ids, mask = ids[: max_len + 1], mask[: max_len + 1]
        if sum(mask[1:]) > 0:  # an answer cut off entirely teaches nothing
            examples.append((ids, mask))
    if not examples:
        raise ParrotError(f"No example keeps an assistant token within {max_len} tokens; "
                          "shorten the prompts or use a model with a longer context.")
    return examples


@dataclass(frozen=True)
class SFTBatch:
    """tokens (B, T+1) right-padded; mask (B, T): 1 where target tokens[:, 1:] carries loss.

    share: this rank's loss weight, world_size * (its loss tokens) / (the global batch's),
    so that averaging the ranks' weighted means gives the mean over the global batch
    (1 for a whole batch)."""

    tokens: torch.Tensor
    mask: torch.Tensor
    share: float = 1.0

    def to(self, device: Any, non_blocking: bool = False) -> SFTBatch:
        return SFTBatch(self.tokens.to(device, non_blocking=non_blocking),
                        self.mask.to(device, non_blocking=non_blocking), self.share)


def collate(examples: Sequence[Example], pad_id: int = 0) -> SFTBatch:
    """Right-pad to the longest example; the loss mask is shifted onto the targets."""
    width = max(len(ids) for ids, _ in examples)
    tokens = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.float32)
    for row, (ids, m) in enumerate(examples):
        tokens[row, : len(ids)] = torch.tensor(ids)
        mask[row, : len(m)] = torch.tensor(m, dtype=torch.float32)
    return SFTBatch(tokens, mask[:, 1:])


class SFTSampler(SeededSampler):
    """Random batches of examples from a seeded generator (resumable like WindowSampler).

    Data parallelism: every rank draws the same global batch, pads it to one width and keeps
    its own contiguous rows, with `share` set so that the mean over ranks of each rank's
    loss is the global batch's loss (see `SFTBatch`)."""

    def __init__(self, examples: list[Example], batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1) -> None:
        if batch_size % world_size:
            raise ParrotError(f"train.batch_size={batch_size} must be divisible by the "
                              f"{world_size} processes.")
        super().__init__(batch_size, seed)
        self.examples, self.rank, self.world_size = examples, rank, world_size
        self.seq_len = max(len(ids) for ids, _ in examples) - 1  # for tokens/s accounting

    def next(self) -> SFTBatch:
        picks = torch.randint(0, len(self.examples), (self.batch_size,), generator=self.generator)
        batch = collate([self.examples[i] for i in picks.tolist()])
        if self.world_size == 1:
            return batch
        rows = slice(self.rank * self.batch_size // self.world_size,
                     (self.rank + 1) * self.batch_size // self.world_size)
        mine = batch.mask[rows]
        share = self.world_size * mine.sum().item() / max(batch.mask.sum().item(), 1.0)
        return SFTBatch(batch.tokens[rows], mine, share)


def fixed_sft_batches(examples: list[Example], batch_size: int) -> list[SFTBatch]:
    """Every example once, in order (validation)."""
    return [collate(examples[i : i + batch_size]) for i in range(0, len(examples), batch_size)]
