"""Tool calls in a conversation: how tools are shown to a model, how its calls are read back.

A template that knows tools (its Jinja source uses a `tools` variable, as many Hugging Face
templates do) gets them in its own format. For one that does not (SmolLM2's ChatML, Gemma's),
parrot's documented default is the Hermes/Qwen layout most small instruct models have seen:

- a system message lists each tool as JSON and asks for a call written as
  `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`;
- an assistant message with `tool_calls` becomes that text;
- a `role: "tool"` message becomes a user turn `<tool_response>...</tool_response>` (a user
  turn, so templates that insist on alternating user/assistant accept it).

`tool_call_schema(tools)` is the JSON schema of one call (the name, then arguments that match
that tool's parameters), which constrained decoding enforces.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from typing import Any

TRIGGER = "<tool_call>"
_CALL = re.compile(r"<tool_call>\s*(\{.*?\})\s*(?:</tool_call>|$)", re.S)


def template_knows_tools(source: str) -> bool:
    return re.search(r"\btools\b", source) is not None


def tools_system_text(tools: Sequence[dict]) -> str:
    lines = ["You can call tools. To call one, reply with only", TRIGGER,
             '{"name": "<tool name>", "arguments": {<the arguments as JSON>}}', "</tool_call>",
             "The tools (each with the JSON schema of its arguments):"]
    for tool in tools:
        function = tool["function"]
        lines.append(json.dumps({"name": function["name"],
                                 "description": function.get("description", ""),
                                 "parameters": function.get("parameters", {})}))
    return "\n".join(lines)


def call_text(call: dict) -> str:
    """One OpenAI tool call as the default format's text."""
    function = call["function"]
    arguments = function.get("arguments") or "{}"
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            pass  # shown as the string it was
    return f"{TRIGGER}\n{json.dumps({'name': function['name'], 'arguments': arguments})}\n</tool_call>"


def with_default_tools(messages: Sequence[dict], tools: Sequence[dict] | None) -> list[dict]:
    """Messages rewritten into the default format: tools in the system message, calls and
    tool results as text. Messages without tools or calls pass through unchanged."""
    out = []
    for message in messages:
        if message.get("role") == "assistant" and message.get("tool_calls"):
            text = "\n".join(call_text(c) for c in message["tool_calls"])
            content = message.get("content") or ""
            out.append({"role": "assistant", "content": f"{content}\n{text}".strip()})
        elif message.get("role") == "tool":
            out.append({"role": "user", "content":
                        f"<tool_response>\n{message.get('content') or ''}\n</tool_response>"})
        else:
            out.append({"role": message["role"], "content": message.get("content") or ""})
    if tools:
        system = tools_system_text(tools)
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{system}"}
        else:
            out.insert(0, {"role": "system", "content": system})
    return out


def tool_call_schema(tools: Sequence[dict]) -> dict:
    """The JSON schema of one call to any of `tools`: {"name": <one of them>, "arguments": ...}."""
    options = [{"type": "object",
                "properties": {"name": {"const": t["function"]["name"]},
                               "arguments": t["function"].get("parameters") or {"type": "object"}},
                "required": ["name", "arguments"]} for t in tools]
    return options[0] if len(options) == 1 else {"anyOf": options}


def parse_tool_calls(text: str, whole_is_call: bool = False) -> tuple[str, list[dict], list[str]]:
    """(content, OpenAI tool calls, problems) read from a reply. With `whole_is_call` the reply
    is one call's JSON (constrained output). A call whose JSON does not parse is reported in
    `problems` and left in the content, never raised."""
    bodies = [text] if whole_is_call else _CALL.findall(text)
    calls, problems = [], []
    for body in bodies:
        try:
            value = json.loads(body)
            if not isinstance(value, dict) or not isinstance(value.get("name"), str):
                raise ValueError("a call needs a \"name\" string")
        except ValueError as err:
            problems.append(f"the model wrote a tool call that is not valid JSON ({err})")
            continue
        calls.append({"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                      "function": {"name": value["name"],
                                   "arguments": json.dumps(value.get("arguments", {}))}})
    content = "" if whole_is_call and calls else _CALL.sub("", text).strip() if calls else text
    return content, calls, problems


def render_args(tools: Sequence[dict] | None, source: str) -> dict[str, Any]:
    """Extra variables for a template that knows tools."""
    return {"tools": list(tools)} if tools and template_knows_tools(source) else {}
