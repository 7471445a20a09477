"""Training conversations that teach a small model to use tools, generated from the word
problems of the training templates (never the held-out ones).

- PAL: the question with the PAL cue, answered by the problem's program in a code block.
- ReAct: the ReAct instructions and the question, answered by a trace that calls the
  calculator once per step of the worked solution, then finishes. The tool's observations
  are part of the assistant's text (the ReAct scratchpad continues one turn), so the loss
  covers them too: the model also learns what the calculator answers.
"""

from __future__ import annotations

import json
from pathlib import Path

from parrot.data.word_problems import WordProblem, generate
from parrot.tools.builtin import calculator, registry_for
from parrot.tools.prompting import messages_for
from parrot.tools.react import FINISH, instructions
from parrot.utils.arithmetic import format_number
from parrot.utils.atomic import atomic_write_text


def pal_conversation(problem: WordProblem) -> list[dict]:
    return [*messages_for("pal", problem.question),
            {"role": "assistant", "content": f"```python\n{problem.program()}\n```"}]


def react_conversation(problem: WordProblem) -> list[dict]:
    registry = registry_for(["calculator"])
    lines = []
    for step in problem.steps:
        arguments = json.dumps({"expression": step.expression})
        lines += [f"Thought: I need the {step.what}.", "Action: calculator",
                  f"Action Input: {arguments}", f"Observation: {calculator(step.expression)}"]
    answer = json.dumps({"answer": format_number(problem.answer)})
    lines += ["Thought: I know the answer.", f"Action: {FINISH}", f"Action Input: {answer}"]
    return [{"role": "system", "content": instructions(registry)},
            {"role": "user", "content": problem.question},
            {"role": "assistant", "content": "\n".join(lines)}]


def write_traces(path: Path, count: int, seed: int = 0) -> Path:
    """`count` PAL and `count` ReAct conversations (JSONL, SFT format) from training templates."""
    problems = generate(count, "train", seed=seed)
    rows = [{"messages": pal_conversation(p)} for p in problems]
    rows += [{"messages": react_conversation(p)} for p in problems]
    order = sorted(range(len(rows)), key=lambda i: (i % count, i))  # interleave the two kinds
    atomic_write_text(path, "".join(json.dumps(rows[i]) + "\n" for i in order))
    return path
