"""Preference data: (prompt, chosen, rejected) → token ids with completion-only masks.

Each JSONL line is one ranked pair, in one of the shapes preference datasets (and TRL) use:

    explicit prompt   {"prompt": P, "chosen": C, "rejected": R}
                      P a string (one user turn) or a message list; C and R strings (one
                      assistant turn) or message lists
    implicit prompt   {"chosen": [...messages], "rejected": [...messages]}: two whole
                      conversations; their longest common prefix of messages is the prompt
                      (HH-RLHF style). Two strings work too: their common text prefix
                      becomes one user turn, the rest of each one assistant turn.

Both answers are rendered after the prompt with the model's chat template
(`parrot.chat.render_ids`). The mask is 1 only on the completion's assistant tokens
(answer and end-of-turn marker), never on the prompt, earlier assistant turns or padding,
so a sequence log-probability log π(y|x) sums exactly the tokens of y.

A batch of B pairs holds 2B rows, the B chosen ones first, then the B rejected ones in
the same order (the layout TRL uses), right-padded.
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
from parrot.data.sft import Example
from parrot.errors import ParrotError

Messages = list[dict[str, Any]]


@dataclass(frozen=True)
class PreferencePair:
    """One ranked pair: the prompt's messages and the two completions' messages."""

    prompt: Messages
    chosen: Messages
    rejected: Messages


def _messages(value: Any, role: str, where: str, field: str) -> Messages:
    """A string as one `role` turn, or a checked message list."""
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, list):
        try:
            return check_messages(value)
        except ParrotError as err:
            raise ParrotError(f"{where}: '{field}': {err.message}") from None
    raise ParrotError(f"{where}: '{field}' must be a string or a list of "
                      "{role, content} messages.")


def common_prefix_length(a: Sequence[Any], b: Sequence[Any]) -> int:
    """How many leading items a and b share: n such that a[:n] == b[:n] and a[n] != b[n]."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def split_implicit(chosen: Any, rejected: Any, where: str) -> PreferencePair:
    """The prompt of two whole conversations (or texts): their longest common prefix."""
    if isinstance(chosen, str) and isinstance(rejected, str):
        n = common_prefix_length(chosen, rejected)
        if n == 0:
            raise ParrotError(f"{where}: 'chosen' and 'rejected' share no common prefix, so "
                              "no prompt can be found; add a 'prompt' field.")
        return PreferencePair([{"role": "user", "content": chosen[:n]}],
                              [{"role": "assistant", "content": chosen[n:]}],
                              [{"role": "assistant", "content": rejected[n:]}])
    a = _messages(chosen, "assistant", where, "chosen")
    b = _messages(rejected, "assistant", where, "rejected")
    n = common_prefix_length(a, b)
    if n == 0:
        raise ParrotError(f"{where}: the 'chosen' and 'rejected' conversations share no "
                          "leading message, so no prompt can be found; start both with the "
                          "same prompt turns or add a 'prompt' field.")
    return PreferencePair(a[:n], a[n:], b[n:])


def record_to_pair(record: Any, where: str) -> PreferencePair:
    """The ranked pair of one JSONL record (explicit or implicit prompt)."""
    if not isinstance(record, dict):
        raise ParrotError(f"{where}: expected a JSON object with 'chosen' and 'rejected'.")
    missing = [k for k in ("chosen", "rejected") if k not in record]
    if missing:
        raise ParrotError(f"{where}: the record has no '{missing[0]}'; each preference pair "
                          "needs both 'chosen' and 'rejected' answers.")
    if "prompt" in record:
        pair = PreferencePair(_messages(record["prompt"], "user", where, "prompt"),
                              _messages(record["chosen"], "assistant", where, "chosen"),
                              _messages(record["rejected"], "assistant", where, "rejected"))
    else:
        pair = split_implicit(record["chosen"], record["rejected"], where)
    if pair.chosen == pair.rejected:
        raise ParrotError(f"{where}: 'chosen' and 'rejected' are identical, so the pair "
                          "ranks nothing; remove it or give two different answers.")
    for name, completion in (("chosen", pair.chosen), ("rejected", pair.rejected)):
        if not completion or completion[0]["role"] != "assistant":
            raise ParrotError(f"{where}: the {name} completion must start with an assistant "
                              "turn (the answer being ranked).")
    return pair


def load_preferences(path: str | Path) -> list[PreferencePair]:
    """Every pair in a JSONL file; ParrotError naming file and line for a bad record."""
    path = Path(path)
    if not path.is_file():
        raise ParrotError(f"No data file at {path}; pass a .jsonl file of preference pairs.")
    pairs = []
    for number, line in enumerate(read_utf8(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except ValueError as err:
            raise ParrotError(f"{where}: not valid JSON ({err.msg}); each line must be one "
                              "JSON object.") from None
        pairs.append(record_to_pair(record, where))
    if not pairs:
        raise ParrotError(f"{path} holds no preference pairs; add one JSON object per line.")
    return pairs


def encode_completion(prompt: Messages, completion: Messages, tokenizer: Any,
                      template: str | ChatTemplate, max_len: int) -> Example:
    """(ids, mask) of prompt + completion, mask 1 on the completion's assistant tokens.

    render_ids encodes each turn's span on its own, so the ids of the prompt rendered with
    the generation prompt are exactly the first ids of the whole conversation.
    """
    prompt_ids, _ = render_ids(prompt, tokenizer, template, add_generation_prompt=True)
    ids, mask = render_ids(prompt + completion, tokenizer, template)
    if ids[: len(prompt_ids)] != prompt_ids:
        raise ParrotError("This chat template renders the prompt differently once an answer "
                          "follows, so the completion cannot be masked; use a built-in template.")
    mask = [0] * len(prompt_ids) + mask[len(prompt_ids):]
    return ids[: max_len + 1], mask[: max_len + 1]  # keep the start, as TRL does


def encode_preferences(pairs: Sequence[PreferencePair], tokenizer: Any,
                       template: str | ChatTemplate, max_len: int) -> list[tuple[Example, Example]]:
    """(chosen, rejected) examples; a pair whose answers are cut off entirely, or cut to the
    same tokens, teaches nothing and is left out (ParrotError when none is left)."""
    examples = []
    for pair in pairs:
        chosen = encode_completion(pair.prompt, pair.chosen, tokenizer, template, max_len)
        rejected = encode_completion(pair.prompt, pair.rejected, tokenizer, template, max_len)
        if sum(chosen[1][1:]) and sum(rejected[1][1:]) and chosen[0] != rejected[0]:
            examples.append((chosen, rejected))
    if not examples:
        raise ParrotError(f"No pair keeps two different answers within {max_len} tokens; "
                          "shorten the prompts or raise --max-len.")
    return examples


@dataclass(frozen=True)
class PreferenceBatch:
    """2B rows (chosen, then rejected): tokens (2B, T+1) right-padded, mask (2B, T) on the
    targets tokens[:, 1:], lengths (2B,) real ids per row, ref (2B,) the reference's
    sequence log-probabilities when cached (else None)."""

    tokens: torch.Tensor
    mask: torch.Tensor
    lengths: torch.Tensor
    ref: torch.Tensor | None = None

    def to(self, device: Any, non_blocking: bool = False) -> PreferenceBatch:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=non_blocking)
        return PreferenceBatch(move(self.tokens), move(self.mask), move(self.lengths),
                               move(self.ref))


def collate_rows(rows: Sequence[Example], pad_id: int = 0
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (tokens (N, T+1), mask on the targets (N, T), lengths (N,))."""
    width = max(len(ids) for ids, _ in rows)
    tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.float32)
    for i, (ids, m) in enumerate(rows):
        tokens[i, : len(ids)] = torch.tensor(ids)
        mask[i, : len(m)] = torch.tensor(m, dtype=torch.float32)
    return tokens, mask[:, 1:], torch.tensor([len(ids) for ids, _ in rows])


def collate_pairs(pairs: Sequence[tuple[Example, Example]], ref: torch.Tensor | None = None,
                  pad_id: int = 0) -> PreferenceBatch:
    """Chosen rows then rejected rows, right-padded; ref (B, 2) → (2B,) in the same order."""
    rows = [c for c, _ in pairs] + [r for _, r in pairs]
    flat = None if ref is None else torch.cat([ref[:, 0], ref[:, 1]])
    return PreferenceBatch(*collate_rows(rows, pad_id), flat)


class PreferenceSampler(SeededSampler):
    """Random batches of pairs (resumable like SFTSampler); ref (N, 2) rides along."""

    def __init__(self, pairs: list[tuple[Example, Example]], batch_size: int, seed: int,
                 ref: torch.Tensor | None = None) -> None:
        super().__init__(batch_size, seed)
        self.pairs, self.ref = pairs, ref
        # For tokens/s accounting: a pair is two sequences.
        self.seq_len = 2 * (max(len(ids) for pair in pairs for ids, _ in pair) - 1)

    def next(self) -> PreferenceBatch:
        picks = torch.randint(0, len(self.pairs), (self.batch_size,), generator=self.generator)
        index = picks.tolist()
        return collate_pairs([self.pairs[i] for i in index],
                             None if self.ref is None else self.ref[picks])


def fixed_preference_batches(pairs: list[tuple[Example, Example]], batch_size: int,
                             ref: torch.Tensor | None = None) -> list[PreferenceBatch]:
    """Every pair once, in order (validation, scoring)."""
    return [collate_pairs(pairs[i : i + batch_size],
                          None if ref is None else ref[i : i + batch_size])
            for i in range(0, len(pairs), batch_size)]
