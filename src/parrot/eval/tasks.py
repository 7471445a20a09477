"""Local multiple-choice tasks, generated from text with a seed (nothing is downloaded).

`continuation_task`: given the words before a point in a held-out document, which of
four spans of words comes next? The true continuation and three spans taken from other
documents; a language model that read the context should prefer the true one. The
items are JSONL records {"context", "choices", "answer"} (`predictions.load_choice_task`
reads them; `lm_eval_task_yaml` points lm-evaluation-harness at the same file).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

from parrot.errors import ParrotError
from parrot.utils.atomic import atomic_write_text


def continuation_task(texts: Sequence[str], n: int, seed: int = 0, context_words: int = 24,
                      choice_words: int = 6, n_choices: int = 4) -> list[dict]:
    """n items (see the module docstring), deterministic for a seed."""
    docs = [t.split() for t in texts if len(t.split()) >= context_words + choice_words]
    if len(docs) < n_choices:
        raise ParrotError(f"A continuation task needs at least {n_choices} documents of "
                          f"{context_words + choice_words} words or more; got {len(docs)}.")
    rng = random.Random(seed)
    items = []
    for _ in range(n):
        d = rng.randrange(len(docs))
        words = docs[d]
        at = rng.randrange(context_words, len(words) - choice_words + 1)
        true = " " + " ".join(words[at:at + choice_words])
        others = rng.sample([i for i in range(len(docs)) if i != d], n_choices - 1)
        choices = [true]
        for o in others:
            start = rng.randrange(0, len(docs[o]) - choice_words + 1)
            choices.append(" " + " ".join(docs[o][start:start + choice_words]))
        rng.shuffle(choices)
        items.append({"context": " ".join(words[at - context_words:at]),
                      "choices": choices, "answer": choices.index(true)})
    return items


def write_jsonl(path: str | Path, records: Sequence[dict]) -> Path:
    path = Path(path)
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return path


def lm_eval_task_yaml(name: str, jsonl: str | Path) -> str:
    """An lm-evaluation-harness task over a local JSONL of {"context", "choices",
    "answer"} items (dataset_path: json, so nothing is downloaded)."""
    return "\n".join([
        f"task: {name}",
        "dataset_path: json",
        "dataset_kwargs:",
        "  data_files:",
        f"    test: {Path(jsonl).resolve()}",
        "test_split: test",
        "output_type: multiple_choice",
        "doc_to_text: context",
        "doc_to_choice: choices",
        "doc_to_target: answer",
        'target_delimiter: ""',
        "metric_list:",
        "  - metric: acc",
        "  - metric: acc_norm",
        "",
    ])
