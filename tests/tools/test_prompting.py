"""Answer extraction, the strategies' prompts, PAL's retry loop and the ReAct loop, driven by
a scripted model so every branch is exercised."""

import dataclasses
import shutil
from fractions import Fraction

import pytest

from parrot.data.word_problems import HELD_OUT, TRAIN, generate
from parrot.tools.builtin import registry_for
from parrot.tools.prompting import ask_batch, extract_answer, extract_program, is_correct
from parrot.tools.react import FINISH, parse_action, run_react
from parrot.tools.registry import Registry, Tool


@dataclasses.dataclass
class Reply:
    text: str


class ScriptedModel:
    """Stands in for parrot.LLM: replies come from a script, keyed by call order per prompt."""

    def __init__(self, script):
        self.script, self.prompts = script, []
        self.template = type("T", (), {"stop": ("<|im_end|>",)})()

    def chat_prompt(self, messages):
        return "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant: "

    def generate_batch(self, prompts, **sampling):
        self.prompts.append((prompts, sampling))
        return [Reply(self.script(prompt)) for prompt in prompts]


@pytest.mark.parametrize("reply, value", [
    ("The answer is 45.", Fraction(45)), ("so it costs $1,200.", Fraction(1200)),
    ("Final Answer: 3/4", Fraction(3, 4)), ("2 + 3 = 5, then 5 * 2 = 10", Fraction(10)),
    ("The answer is 7. Check: 7 * 2 = 14.", Fraction(7)), ("no numbers here", None),
    ("answer: -2.5", Fraction(-5, 2)),
])
def test_the_answer_is_read_by_the_documented_rule(reply, value):
    assert extract_answer(reply) == value


def test_correct_means_exact_up_to_two_decimals():
    assert is_correct(Fraction(67, 100), Fraction(2, 3))
    assert not is_correct(Fraction(7, 10), Fraction(2, 3))
    assert not is_correct(None, Fraction(1))


def test_the_program_is_taken_from_the_code_block():
    assert extract_program("Here:\n```python\nprint(1)\n```\nDone.") == "print(1)"
    assert extract_program("print(2)") == "print(2)"


def test_train_and_held_out_templates_are_disjoint_and_reproducible():
    assert not {t.__name__ for t in TRAIN} & {t.__name__ for t in HELD_OUT}
    assert [p.question for p in generate(8, seed=3)] == [p.question for p in generate(8, seed=3)]
    assert {p.template for p in generate(40)} == {t.__name__ for t in HELD_OUT}


@pytest.mark.parametrize("problem", generate(8, "train") + generate(8, "held_out"))
def test_the_worked_solution_and_program_agree_with_the_answer(problem):
    assert extract_answer(problem.reasoning()) == problem.answer
    printed = []
    exec(problem.program(), {"print": printed.append})  # our own generated code, not a model's
    assert Fraction(printed[0]).limit_denominator() == problem.answer


def test_few_shot_cot_puts_worked_examples_before_the_question():
    model = ScriptedModel(lambda prompt: "The answer is 8.")
    [attempt] = ask_batch(model, ["How many?"], "few-shot-cot", temperature=0)
    prompt = model.prompts[0][0][0]
    assert prompt.count("assistant: ") == 4 and prompt.endswith("assistant: ")
    assert prompt.count("The answer is N.") == 4  # the cue on every question
    assert attempt.answer == 8


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")
def test_pal_sends_the_error_back_and_retries():
    def script(prompt):
        if "Running it failed" in prompt:
            return "```python\nprint(12 // 3 * 2)\n```"
        return "```python\nprint(undefined_name)\n```"
    model = ScriptedModel(script)
    [attempt] = ask_batch(model, ["12 pens at 3 for $2?"], "pal", retries=2)
    assert attempt.answer == 8 and len(attempt.replies) == 2
    assert "NameError" in attempt.notes[0] and "printed: 8" in attempt.notes[1]


def test_react_runs_tools_until_finish():
    def script(prompt):
        if "Observation: 8" in prompt:
            return 'Thought: done.\nAction: finish\nAction Input: {"answer": "8"}'
        return 'Thought: compute.\nAction: calculator\nAction Input: {"expression": "12/3*2"}\n'
    model = ScriptedModel(script)
    [trace] = run_react(model, ["12 pens?"], registry_for(["calculator"]))
    assert trace.answer == 8 and [s.action for s in trace.steps] == ["calculator", FINISH]
    assert model.prompts[0][1]["stop"][0] == "Observation:"


def test_react_turns_every_model_mistake_into_an_observation():
    def explode(x: int) -> str:
        """Raises."""
        raise ValueError("boom")
    replies = iter(['Action: calculator\nAction Input: {"expression": 12/3}',  # not JSON
                    'Action: hammer\nAction Input: {}',                      # unknown tool
                    'Action: explode\nAction Input: {"x": 1}',               # tool raises
                    'I think it is 8.',                                      # no action
                    'Final Answer: 8'])
    registry = Registry([*registry_for(["calculator"]).tools.values(), Tool.from_function(explode)])
    [trace] = run_react(ScriptedModel(lambda prompt: next(replies)), ["q"], registry)
    observations = [step.observation for step in trace.steps]
    assert "not valid JSON" in observations[0]
    assert "there is no tool 'hammer'; the tools are calculator, explode" in observations[1]
    assert "explode raised ValueError: boom" in observations[2]
    assert "no Action found" in observations[3]
    assert trace.answer == 8


def test_react_stops_at_the_step_budget():
    model = ScriptedModel(lambda prompt: "Thought: hmm.\nAction: calculator\nAction Input: {\"expression\": \"1\"}")
    [trace] = run_react(model, ["q"], registry_for(["calculator"]), max_steps=3)
    assert len(trace.steps) == 3 and trace.final is None and trace.answer is None


def test_parse_action_takes_the_last_action():
    assert parse_action('Action: a\nAction Input: {}\nAction: b\nAction Input: {"x": 1}') == \
        ("b", '{"x": 1}')
