"""ReAct: the model alternates Thought / Action / Action Input, the loop runs the tool and
writes the Observation, until the model calls `finish` or the step budget runs out.

The scratchpad continues the assistant's turn, so each step is one generation that stops at
"Observation:"; the loop appends the tool's result and generates again:

    Thought: 12 pens are 4 groups of 3.
    Action: calculator
    Action Input: {"expression": "12 / 3 * 2"}
    Observation: 8
    Thought: I know the answer.
    Action: finish
    Action Input: {"answer": "8"}

A reply that writes "Final Answer: X" instead of calling finish is taken as finishing with X.
A missing Action, arguments that are not JSON, an unknown tool and a tool that raises all
become observations the model reads on the next step; nothing here raises on model output.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

from parrot.tools.prompting import extract_answer
from parrot.tools.registry import Registry

FINISH = "finish"
_ACTION = re.compile(r"Action:\s*([\w.:-]+)")
_INPUT = re.compile(r"Action Input:\s*(.*)", re.S)
_FINAL = re.compile(r"Final Answer:\s*(.+)", re.I)


def instructions(registry: Registry) -> str:
    """The system prompt: the format, and each tool with its JSON arguments."""
    lines = ["Answer the question by using tools. Use exactly this format:",
             "Thought: what to do next", "Action: one tool name",
             "Action Input: the tool's arguments as one JSON object",
             "Observation: the tool's result (it is written for you)",
             "Repeat Thought/Action/Action Input/Observation as needed. To answer, write",
             f"Action: {FINISH}", 'Action Input: {"answer": "the final answer"}', "", "Tools:"]
    for tool in registry.tools.values():
        lines.append(f"- {tool.name}: {tool.description} "
                     f"Arguments: {json.dumps(tool.parameters['properties'])}")
    lines.append(f'- {FINISH}: Give the final answer. Arguments: {{"answer": {{"type": "string"}}}}')
    return "\n".join(lines)


@dataclasses.dataclass
class Step:
    thought_and_action: str
    action: str | None
    arguments: str
    observation: str


@dataclasses.dataclass
class Trace:
    question: str
    steps: list[Step] = dataclasses.field(default_factory=list)
    final: str | None = None

    @property
    def answer(self) -> Fraction | None:
        return extract_answer(f"answer is {self.final}") if self.final is not None else None

    def scratchpad(self) -> str:
        return "".join(f"{s.thought_and_action.rstrip()}\nObservation: {s.observation}\n"
                       for s in self.steps)


def parse_action(reply: str) -> tuple[str | None, str]:
    """(tool name, raw JSON arguments) from one step's text; (None, "") when there is none."""
    action = _ACTION.findall(reply)
    if not action:
        final = _FINAL.search(reply)
        return (FINISH, json.dumps({"answer": final.group(1).strip()})) if final else (None, "")
    arguments = _INPUT.search(reply.split(f"Action: {action[-1]}")[-1])
    return action[-1], arguments.group(1).strip() if arguments else ""


def take_step(trace: Trace, reply: str, registry: Registry) -> Step:
    """Act on one reply: finish, or run the tool and record its observation."""
    action, arguments = parse_action(reply)
    if action == FINISH:
        try:
            value = json.loads(arguments) if arguments else {}
            trace.final = str(value.get("answer", "")) if isinstance(value, dict) else str(value)
            observation = "done"
        except json.JSONDecodeError as err:
            observation = f"error: the finish arguments are not valid JSON ({err.msg})"
    elif action is None:
        observation = ("error: no Action found; write 'Action: <tool>' and 'Action Input: "
                       "{...}', or 'Action: finish'")
    else:
        observation = registry.call(action, arguments)
    step = Step(reply, action, arguments, observation)
    trace.steps.append(step)
    return step


def run_react(llm: Any, questions: Sequence[str], registry: Registry, *, max_steps: int = 6,
              on_step: Callable[[int, Step], None] | None = None,
              **sampling: Any) -> list[Trace]:
    """ReAct for each question, the questions' steps decoded together as a batch."""
    system = {"role": "system", "content": instructions(registry)}
    traces = [Trace(q) for q in questions]
    heads = [llm.chat_prompt([system, {"role": "user", "content": q}]) for q in questions]
    stop = ("Observation:", *llm.template.stop, *sampling.pop("stop", ()))
    for _ in range(max_steps):
        active = [i for i, trace in enumerate(traces) if trace.final is None]
        if not active:
            break
        prompts = [heads[i] + traces[i].scratchpad() for i in active]
        completions = llm.generate_batch(prompts, stop=stop, **sampling)
        for index, completion in zip(active, completions, strict=True):
            step = take_step(traces[index], completion.text, registry)
            if on_step is not None:
                on_step(index, step)
    return traces
