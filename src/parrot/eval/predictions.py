"""Predictions to calibrate: next-token logits over a text, and multiple-choice scores.

Next token: every position of disjoint context-length windows predicts the token after
it, a (N, V) row of logits and a label. Multiple choice (scored by log-likelihood, as
lm-evaluation-harness does): each choice's score is

    s_c = sum over the choice's tokens t of log p(t | context, earlier choice tokens)

and softmax(s) over the choices is the model's probability for each answer. A task is a
JSONL file of {"context": ..., "choices": [...], "answer": index}.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from parrot.errors import ParrotError


@dataclass(frozen=True)
class Choice:
    context: str
    choices: tuple[str, ...]
    answer: int


def is_choice_task(path: str | Path) -> bool:
    """Whether `path` is a JSONL file whose first record has "choices" and "answer"."""
    path = Path(path)
    if path.suffix != ".jsonl" or not path.is_file():
        return False
    with open(path, encoding="utf-8") as f:
        first = f.readline()
    try:
        record = json.loads(first)
    except ValueError:
        return False
    return isinstance(record, dict) and "choices" in record and "answer" in record


def load_choice_task(path: str | Path) -> list[Choice]:
    """The items of a multiple-choice JSONL task; ParrotError naming a bad line."""
    items = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            item = Choice(str(record["context"]), tuple(map(str, record["choices"])),
                          int(record["answer"]))
        except (ValueError, KeyError, TypeError) as err:
            raise ParrotError(f"{path}:{number} is not a task item {{\"context\", \"choices\", "
                              f"\"answer\"}} ({err}).") from None
        if not 0 <= item.answer < len(item.choices):
            raise ParrotError(f"{path}:{number}: answer {item.answer} is not an index into "
                              f"its {len(item.choices)} choices.")
        items.append(item)
    return items


@torch.no_grad()
def token_predictions(model: nn.Module, ids: Sequence[int], context: int,
                      max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (N, V) float32, labels (N,)) for up to max_tokens next-token predictions
    over disjoint windows of `context` inputs."""
    ids_t = torch.tensor(list(ids), dtype=torch.long)
    n = min(max_tokens, max(0, len(ids_t) - 1))
    if n == 0:
        raise ParrotError("The text is too short to score: it needs at least two tokens.")
    logits, total = None, 0  # filled in place: (N, V) for a large vocabulary is big
    for start in range(0, n, context):
        window = ids_t[start:start + context + 1]
        rows = model(window[None, :-1])[0].float()                         # (T, V)
        take = min(len(rows), n - total)
        if logits is None:
            logits = torch.empty(n, rows.shape[-1])
        logits[total:total + take] = rows[:take]
        total += take
    return logits, ids_t[1:n + 1]


@torch.no_grad()
def choice_scores(model: nn.Module, encode, items: Sequence[Choice], context_length: int,
                  bos: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores (N, C_max) with -inf for missing choices, answers (N,)) by log-likelihood.

    The context keeps its end when context + choice exceed the model's context.
    """
    width = max(len(item.choices) for item in items)
    scores = torch.full((len(items), width), float("-inf"), dtype=torch.float64)
    for row, item in enumerate(items):
        prefix = ([] if bos is None else [bos]) + encode(item.context)
        for col, choice in enumerate(item.choices):
            tail = encode(choice)
            ids = (prefix + tail)[-(context_length + 1):]
            if not tail or len(ids) < 2:
                continue
            x = torch.tensor(ids, dtype=torch.long)[None]
            logp = torch.log_softmax(model(x[:, :-1])[0].double(), -1)      # (T, V)
            n = min(len(tail), len(ids) - 1)
            targets = x[0, -n:]
            scores[row, col] = logp[-n:].gather(-1, targets[:, None]).sum()
    return scores, torch.tensor([item.answer for item in items])


def split_halves(n: int) -> tuple[slice, slice]:
    """(validation, test): the first half fits, the second half measures."""
    return slice(0, n // 2), slice(n // 2, n)
