"""The generated tool traces are correct: PAL programs print the answer, ReAct traces replay."""

import shutil

import pytest

from parrot.data.word_problems import generate
from parrot.tools.builtin import registry_for
from parrot.tools.prompting import extract_answer, extract_program
from parrot.tools.react import Trace, parse_action, take_step
from parrot.tools.sandbox import run_python
from parrot.tools.traces import pal_conversation, react_conversation, write_traces


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")
def test_a_pal_trace_prints_the_answer_in_the_sandbox():
    problem = generate(1, "train", seed=5)[0]
    program = extract_program(pal_conversation(problem)[-1]["content"])
    assert extract_answer(run_python(program).stdout) == problem.answer


@pytest.mark.parametrize("problem", generate(6, "train", seed=2))
def test_a_react_trace_replays_through_the_loop(problem):
    text = react_conversation(problem)[-1]["content"]
    trace, registry = Trace(problem.question), registry_for(["calculator"])
    for chunk in text.split("\nObservation: "):
        reply = chunk.split("\n", 1)[1] if trace.steps else chunk
        step = take_step(trace, reply, registry)
        if step.action != "finish":
            assert chunk != text and step.observation in text
    assert trace.answer == problem.answer
    assert parse_action(text)[0] == "finish"


def test_traces_come_only_from_training_templates(tmp_path):
    import json

    path = write_traces(tmp_path / "traces.jsonl", 10)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 20
    held_out = {p.question for p in generate(200, "held_out")}
    assert not any(r["messages"][-2]["content"].split("\n")[0] in held_out for r in rows)
