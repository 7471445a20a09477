"""Tools from typed functions: schemas from signatures, every failure an observation."""

from fractions import Fraction
from typing import Literal

import pytest

from parrot.errors import ParrotError
from parrot.tools.builtin import calculator, registry_for
from parrot.tools.registry import Registry, Tool, parameters_schema
from parrot.utils.arithmetic import evaluate


def lookup(city: str, units: Literal["metric", "imperial"] = "metric",
           days: int | None = None, tags: list[str] | None = None) -> str:
    """Look up the weather in a city.

    The second paragraph is not part of the description.
    """
    return f"{city}:{units}:{days}"


def broken(x: int) -> str:
    """Always fails."""
    raise RuntimeError("the disk is on fire")


def test_the_schema_comes_from_the_signature():
    assert parameters_schema(lookup) == {
        "type": "object",
        "properties": {"city": {"type": "string"}, "units": {"enum": ["metric", "imperial"]},
                       "days": {"type": "integer"},
                       "tags": {"type": "array", "items": {"type": "string"}}},
        "required": ["city"], "additionalProperties": False}


def test_the_spec_is_openais_tools_shape():
    spec = Tool.from_function(lookup).spec()
    assert spec["type"] == "function"
    assert spec["function"]["name"] == "lookup"
    assert spec["function"]["description"] == "Look up the weather in a city."


def test_a_parameter_without_a_type_hint_is_refused():
    def untyped(x):
        return x
    with pytest.raises(TypeError, match="no type hint"):
        Tool.from_function(untyped)


def test_a_call_with_json_arguments_runs_the_function():
    registry = Registry([Tool.from_function(lookup)])
    assert registry.call("lookup", '{"city": "Oslo", "days": 3}') == "Oslo:metric:3"


@pytest.mark.parametrize("name, arguments, says", [
    ("nowhere", "{}", "there is no tool 'nowhere'; the tools are lookup, broken"),
    ("lookup", "{city: Oslo}", "not valid JSON"),
    ("lookup", "[1, 2]", "must be a JSON object"),
    ("lookup", "{}", "needs the argument 'city'"),
    ("lookup", '{"city": "Oslo", "colour": "red"}', "takes no argument 'colour'"),
    ("lookup", '{"city": 3}', "'city' must be a string"),
    ("broken", '{"x": 1}', "broken raised RuntimeError: the disk is on fire"),
])
def test_every_failure_becomes_an_observation(name, arguments, says):
    registry = Registry([Tool.from_function(lookup), Tool.from_function(broken)])
    assert says in registry.call(name, arguments)


@pytest.mark.parametrize("expression, value", [
    ("3 * (12 / 3)", Fraction(12)), ("1/3 + 2/3", Fraction(1)), ("2**10 - 24", Fraction(1000)),
    ("-7 // 2", Fraction(-4)), ("7 % 4", Fraction(3)), ("1.5 * 4", Fraction(6)),
    ("6 × 7", Fraction(42)), ("2^3", Fraction(8)),
])
def test_the_calculator_is_exact(expression, value):
    assert evaluate(expression) == value


@pytest.mark.parametrize("expression, says", [
    ("__import__('os').system('ls')", "only numbers"), ("open('x')", "only numbers"),
    ("(1).__class__", "only numbers"), ("9**9**9", "exponents"), ("1/0", "division by zero"),
    ("2 +", "cannot parse"), ("x" * 600, "longer than"), ("[1, 2]", "only numbers"),
])
def test_the_calculator_refuses_what_is_not_arithmetic(expression, says):
    with pytest.raises(ParrotError, match=says):
        evaluate(expression)


def test_the_calculator_tool_formats_its_answer():
    assert calculator("12 / 3 * 2") == "8"
    assert calculator("2 / 3") == "0.6666666667"
    assert "division by zero" in registry_for(["calculator"]).call("calculator",
                                                                    '{"expression": "1/0"}')


def test_an_unknown_tool_name_is_a_parrot_error():
    with pytest.raises(ParrotError, match="there is no tool 'hammer'; the tools are calculator"):
        registry_for(["calculator", "hammer"])
