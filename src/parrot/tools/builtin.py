"""The tools parrot ships: an exact calculator and Python in the sandbox."""

from __future__ import annotations

from collections.abc import Callable

from parrot.errors import ParrotError
from parrot.tools.registry import Registry, Tool
from parrot.tools.sandbox import Limits, run_python
from parrot.utils.arithmetic import evaluate, format_number


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression exactly, e.g. "3 * (12 / 3) - 2**3".

    Numbers, parentheses and + - * / // % ** only; no names or functions.
    """
    return format_number(evaluate(expression))


def python(code: str) -> str:
    """Run a Python program in a sandbox (no network, no files but its own) and return what it
    printed. Print the result you need."""
    result = run_python(code, Limits())
    if result.ok:
        return result.stdout.strip() or "(the program printed nothing)"
    return f"error: {result.describe_failure()}"


BUILTIN: dict[str, Callable[..., str]] = {"calculator": calculator, "python": python}


def registry_for(names: list[str], extra: dict[str, Tool] | None = None) -> Registry:
    """A registry of the named tools: built-in names, or tools the caller made (`extra`)."""
    extra = extra or {}
    tools = []
    for name in names:
        if name in extra:
            tools.append(extra[name])
        elif name in BUILTIN:
            tools.append(Tool.from_function(BUILTIN[name]))
        else:
            known = ", ".join([*BUILTIN, *extra]) or "none"
            raise ParrotError(f"there is no tool {name!r}; the tools are {known} "
                              "(and rag:STORE for a retrieval store)")
    return Registry(tools)
