"""Exact-match accuracy of a vision-language model's answers, through the engine.

Each question is asked as a chat turn (`<image>` + question), answered greedily by
`parrot.infer.Engine` (the path `parrot chat` and serve use) and compared with the answer
exactly. The blind baseline asks the same questions without the picture: what the
language model's priors alone get right.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from torch import nn

from parrot.chat import render, special_tokens_text
from parrot.data.scenes import KINDS, Example
from parrot.infer import Engine, SamplingParams
from parrot.infer.vision import IMAGE_PLACEHOLDER, ImagePrompt
from parrot.training.vlm_data import CHAT_TEMPLATE

END = "<|im_end|>"


def chat_prompt(tokenizer: Any, question: str, image: bool) -> str:
    """The rendered chat turn asking `question`, the assistant's turn opened."""
    content = (IMAGE_PLACEHOLDER if image else "") + question
    return render([{"role": "user", "content": content}], CHAT_TEMPLATE, True,
                  **special_tokens_text(tokenizer))


def answers(model: nn.Module, tokenizer: Any, examples: Sequence[Example], image: bool,
            batch: int = 16) -> list[tuple[str, str, str]]:
    """(kind, expected, generated) for every question of `examples`."""
    engine = Engine(model, tokenizer, max_batch=batch, max_len=model.config.context_length)
    params = SamplingParams(temperature=0.0, max_new_tokens=6, stop=(END,))
    asked, prompts = [], []
    for example in examples:
        for qa in example.questions:
            text = chat_prompt(tokenizer, qa.question, image)
            prompts.append(ImagePrompt(text, [example.pixels]) if image else text)
            asked.append((qa.kind, qa.answer))
    out = []
    for start in range(0, len(prompts), 256):  # bounded queues, same results
        done = engine.generate_batch(prompts[start : start + 256], params)
        out += [c.text.strip() for c in done]
    return [(kind, answer, got) for (kind, answer), got in zip(asked, out, strict=True)]


def accuracy_table(rows: Sequence[tuple[str, str, str]], prefix: str) -> dict[str, float]:
    """{prefix: overall accuracy, prefix_<kind>: per kind, prefix_n_<kind>: counts}."""
    right: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    for kind, expected, got in rows:
        total[kind] += 1
        right[kind] += expected == got
    table: dict[str, float] = {prefix: sum(right.values()) / max(1, sum(total.values()))}
    for kind in KINDS:
        if total[kind]:
            table[f"{prefix}_{kind}"] = right[kind] / total[kind]
            table[f"{prefix}_n_{kind}"] = total[kind]
    return table


def evaluate_vlm(model: nn.Module, blind_lm: nn.Module | None, tokenizer: Any,
                 test: Sequence[Example], combo: Sequence[Example],
                 digits: Sequence[Example]) -> dict[str, float]:
    """Accuracies on held-out scenes (per kind), held-out colour-shape pairs and the
    scikit-learn test digits, with the picture and without it (the model's own language
    model, and `blind_lm`, the language model before any picture, when given)."""
    splits = {"": test, "_combo": combo, "_sklearn_digits": digits}
    metrics: dict[str, float] = {}
    for suffix, examples in splits.items():
        if not examples:
            continue
        metrics |= accuracy_table(answers(model, tokenizer, examples, True),
                                  f"acc_with_image{suffix}")
        metrics |= accuracy_table(answers(model, tokenizer, examples, False),
                                  f"acc_blind{suffix}")
        if blind_lm is not None:
            metrics |= accuracy_table(answers(blind_lm, tokenizer, examples, False),
                                      f"acc_blind_lm{suffix}")
    return metrics
