"""Ways of asking a question: direct, chain of thought (zero- and few-shot) and program-aided.

Every strategy turns a question into chat messages, sends a whole batch through the engine
at once, and reads a number out of each reply by one rule, `extract_answer`:

1. the last "answer is X" / "answer: X" (any case, "Final Answer" included) wins;
2. otherwise the last number in the reply;
3. "$", thousands commas and a trailing "." are ignored; fractions like 3/4 are read exactly.

PAL (program-aided language models) asks for a Python program instead, runs it in the
sandbox, and takes the last number it printed. A program that fails is sent back with its
error for at most `retries` more tries.

`llm` is anything with parrot's `LLM` methods `chat_prompt(messages)`, `generate_batch(prompts,
**sampling)` and a `template` with `stop` strings (what `parrot.load` returns).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from parrot.data.word_problems import WordProblem, generate
from parrot.tools.sandbox import Limits, run_python

STRATEGIES = ("direct", "cot", "few-shot-cot", "pal", "react")
DIRECT_CUE = "Reply with the final number only."
COT_CUE = "Let's think step by step, then finish with \"The answer is N.\""
PAL_CUE = ("Write a short Python program that computes the answer and prints it. "
           "Reply with only the program in a ```python code block.")
PAL_LIMITS = Limits(wall_seconds=5)
_NUMBER = r"-?\$?\d[\d,]*(?:\.\d+)?(?:/\d+)?"
_ANSWER_IS = re.compile(rf"answer(?: is|:)\s*(?:about |approximately )?({_NUMBER})", re.I)
_ANY_NUMBER = re.compile(_NUMBER)
_CODE_BLOCK = re.compile(r"```(?:python|py)?\s*\n(.*?)(?:```|$)", re.S)


def parse_number(text: str) -> Fraction | None:
    """The exact value of a number as a model writes it ("$1,200", "3/4", "45.0")."""
    cleaned = text.replace("$", "").replace(",", "").rstrip(".")
    try:
        return Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None


def extract_answer(reply: str) -> Fraction | None:
    """The reply's final answer by the module's rule, or None if it has no number."""
    stated = _ANSWER_IS.findall(reply)
    if stated:
        return parse_number(stated[-1])
    numbers = _ANY_NUMBER.findall(reply)
    return parse_number(numbers[-1]) if numbers else None


def is_correct(predicted: Fraction | None, answer: Fraction) -> bool:
    """Exact, up to rounding at the second decimal (a model that writes 0.67 for 2/3 is right)."""
    return predicted is not None and abs(predicted - answer) < Fraction(1, 200)


def extract_program(reply: str) -> str:
    """The code in the reply's first ```python block, or the whole reply when there is none."""
    match = _CODE_BLOCK.search(reply)
    return (match.group(1) if match else reply).strip()


def exemplars(count: int = 3, seed: int = 1234) -> list[WordProblem]:
    """Worked examples for few-shot prompts, drawn from the training templates only."""
    return generate(count, "train", seed=seed)


def messages_for(strategy: str, question: str, shots: Sequence[WordProblem] = ()) -> list[dict]:
    """The chat messages that ask `question` the way `strategy` does."""
    if strategy == "direct":
        return [{"role": "user", "content": f"{question}\n{DIRECT_CUE}"}]
    if strategy == "cot":
        return [{"role": "user", "content": f"{question}\n{COT_CUE}"}]
    if strategy == "few-shot-cot":
        turns = []
        for shot in shots:
            turns += [{"role": "user", "content": f"{shot.question}\n{COT_CUE}"},
                      {"role": "assistant", "content": shot.reasoning()}]
        return turns + [{"role": "user", "content": f"{question}\n{COT_CUE}"}]
    if strategy == "pal":
        return [{"role": "user", "content": f"{question}\n{PAL_CUE}"}]
    raise ValueError(f"no prompt for strategy {strategy!r}")


@dataclasses.dataclass
class Attempt:
    """One question answered: the transcript of replies (and program runs) and the answer."""

    question: str
    replies: list[str] = dataclasses.field(default_factory=list)
    answer: Fraction | None = None
    notes: list[str] = dataclasses.field(default_factory=list)


def chat_batch(llm: Any, conversations: Sequence[list[dict]], **sampling: Any) -> list[str]:
    """The assistant's reply to each conversation, all decoded together."""
    sampling = dict(sampling)
    stop = tuple(sampling.pop("stop", ())) + tuple(llm.template.stop)
    prompts = [llm.chat_prompt(conversation) for conversation in conversations]
    return [c.text for c in llm.generate_batch(prompts, stop=stop, **sampling)]


def ask_batch(llm: Any, questions: Sequence[str], strategy: str, *, retries: int = 2,
              limits: Limits = PAL_LIMITS, **sampling: Any) -> list[Attempt]:
    """Answer every question with `strategy` (not react: see tools.react)."""
    shots = exemplars() if strategy == "few-shot-cot" else ()
    conversations = [messages_for(strategy, q, shots) for q in questions]
    attempts = [Attempt(q) for q in questions]
    replies = chat_batch(llm, conversations, **sampling)
    if strategy != "pal":
        for attempt, reply in zip(attempts, replies, strict=True):
            attempt.replies.append(reply)
            attempt.answer = extract_answer(reply)
        return attempts
    pending = list(range(len(questions)))
    for round_ in range(retries + 1):
        retry = []
        for index, reply in zip(pending, replies, strict=True):
            attempt = attempts[index]
            attempt.replies.append(reply)
            result = run_python(extract_program(reply), limits)
            if result.ok and extract_answer(result.stdout) is not None:
                attempt.answer = extract_answer(result.stdout)
                attempt.notes.append(f"printed: {result.stdout.strip()[:200]}")
                continue
            problem = (result.describe_failure() if not result.ok
                       else "the program printed no number")
            attempt.notes.append(f"error: {problem}")
            conversations[index] += [{"role": "assistant", "content": reply},
                                     {"role": "user", "content":
                                      f"Running it failed: {problem}. Fix the program. {PAL_CUE}"}]
            retry.append(index)
        if not retry or round_ == retries:
            break
        pending = retry
        replies = chat_batch(llm, [conversations[i] for i in pending], **sampling)
    return attempts
