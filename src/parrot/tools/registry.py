"""Tools as typed Python functions: the JSON schema comes from the signature, the description
from the docstring, and a call with bad arguments becomes an observation, never a crash.

    def calculator(expression: str) -> str:
        '''Evaluate an arithmetic expression exactly, e.g. "3 * (12 / 3)".'''

    Tool.from_function(calculator).spec() ==
        {"type": "function", "function": {"name": "calculator",
         "description": "Evaluate an arithmetic expression exactly, e.g. \\"3 * (12 / 3)\\".",
         "parameters": {"type": "object", "properties": {"expression": {"type": "string"}},
                        "required": ["expression"], "additionalProperties": False}}}

The spec is the shape of OpenAI's `tools` list, so the same registry serves the ReAct loop
and the chat API.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import types
import typing
from collections.abc import Callable
from typing import Any

from parrot.errors import ParrotError

_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}


def json_schema(annotation: Any) -> dict:
    """The JSON schema of one Python type hint: str, int, float, bool, list[X], Literal[...],
    X | None."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation in _JSON_TYPES:
        return {"type": _JSON_TYPES[annotation]}
    if origin is list:
        return {"type": "array", "items": json_schema(args[0]) if args else {}}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        options = [json_schema(arg) for arg in args if arg is not type(None)]
        return options[0] if len(options) == 1 else {"anyOf": options}
    raise TypeError(f"no JSON schema for the type {annotation!r}")


def parameters_schema(function: Callable) -> dict:
    """The object schema of a function's parameters; those without defaults are required."""
    hints = typing.get_type_hints(function)
    properties, required = {}, []
    for name, parameter in inspect.signature(function).parameters.items():
        if name not in hints:
            raise TypeError(f"the tool parameter {name!r} of {function.__name__} has no type hint")
        properties[name] = json_schema(hints[name])
        if parameter.default is inspect.Parameter.empty:
            required.append(name)
    return {"type": "object", "properties": properties, "required": required,
            "additionalProperties": False}


@dataclasses.dataclass(frozen=True)
class Tool:
    """A function a model may call, with the schema of its arguments."""

    name: str
    description: str
    parameters: dict
    function: Callable[..., Any]

    @classmethod
    def from_function(cls, function: Callable[..., Any], name: str | None = None) -> Tool:
        description = inspect.getdoc(function) or ""
        return cls(name or function.__name__, description.split("\n\n")[0].replace("\n", " "),
                   parameters_schema(function), function)

    def spec(self) -> dict:
        """This tool in the OpenAI `tools` format."""
        return {"type": "function", "function": {"name": self.name,
                                                 "description": self.description,
                                                 "parameters": self.parameters}}


def check_arguments(tool: Tool, arguments: dict) -> str | None:
    """Why `arguments` do not fit the tool's schema, or None when they do."""
    properties = tool.parameters["properties"]
    unknown = sorted(set(arguments) - set(properties))
    if unknown:
        return f"{tool.name} takes no argument {unknown[0]!r} (it takes {', '.join(properties)})"
    missing = [name for name in tool.parameters["required"] if name not in arguments]
    if missing:
        return f"{tool.name} needs the argument {missing[0]!r}"
    for name, value in arguments.items():
        kind = properties[name].get("type")
        expected = {"string": str, "integer": int, "number": (int, float),
                    "boolean": bool, "array": list}.get(kind)
        if expected and (not isinstance(value, expected) or
                         (kind in ("integer", "number") and isinstance(value, bool))):
            return f"{tool.name}'s argument {name!r} must be a {kind}"
    return None


class Registry:
    """The tools one agent or request may use, by name."""

    def __init__(self, tools: list[Tool]) -> None:
        self.tools = {tool.name: tool for tool in tools}

    def names(self) -> list[str]:
        return list(self.tools)

    def specs(self) -> list[dict]:
        return [tool.spec() for tool in self.tools.values()]

    def call(self, name: str, arguments: dict | str) -> str:
        """Run one tool call and return its observation text. Unknown tools, arguments that
        are not JSON or do not fit, and tools that raise all come back as observations."""
        tool = self.tools.get(name)
        if tool is None:
            return f"error: there is no tool {name!r}; the tools are {', '.join(self.tools)}"
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as err:
                return f"error: the arguments are not valid JSON ({err.msg} at {err.pos})"
        if not isinstance(arguments, dict):
            return "error: the arguments must be a JSON object"
        problem = check_arguments(tool, arguments)
        if problem:
            return f"error: {problem}"
        try:
            return str(tool.function(**arguments))
        except ParrotError as err:
            return f"error: {err.message}"
        except Exception as err:  # a tool's bug is the model's observation, not our crash
            return f"error: {tool.name} raised {type(err).__name__}: {err}"
