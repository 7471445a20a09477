"""Tools and structured output on the chat API, the OpenAI way.

- `tools` + `tool_choice`: "none" hides the tools; "auto" lets the model answer or call one
  (once it writes `<tool_call>`, the rest of its reply is constrained to a valid call);
  "required" and a named function constrain the whole reply to a call.
- `response_format`: `json_object` (any object) or `json_schema` (that schema), enforced by
  constrained decoding, so the content always parses.
- Replies with calls come back as `tool_calls` with `finish_reason: "tool_calls"`; streamed,
  as tool-call deltas: the id and name first, then the arguments in pieces.

A schema the constraint cannot compile is a 400 that names the unsupported keyword.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from parrot.chat.tool_format import (
    TRIGGER,
    parse_tool_calls,
    template_knows_tools,
    tool_call_schema,
    with_default_tools,
)
from parrot.errors import ParrotError
from parrot.infer.json_schema import compile_schema
from parrot.serve.errors import APIError
from parrot.serve.schemas import ChatCompletionRequest


@dataclasses.dataclass(frozen=True)
class OutputPlan:
    """How a chat request's output is constrained and read."""

    json_schema: Any = None  # None: free text
    trigger: str | None = None  # the constraint starts after this text (tool_choice auto)
    whole_is_call: bool = False  # the whole reply is one call's JSON
    tools: bool = False  # read tool calls out of the reply


def messages_for(body: ChatCompletionRequest, template_source: str) -> tuple[list[dict], dict]:
    """The messages to render, and extra template variables (tools, for a template that
    knows them); the default tool format otherwise (chat.tool_format)."""
    messages = []
    for m in body.messages:
        message = {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
        if m.tool_calls:
            message["tool_calls"] = m.tool_calls
        if m.tool_call_id:
            message["tool_call_id"] = m.tool_call_id
        messages.append(message)
    tools = [t.model_dump() for t in body.tools or []] if body.tool_choice != "none" else []
    if tools and template_knows_tools(template_source):
        return messages, {"tools": tools}
    return with_default_tools(messages, tools), {}


def plan(body: ChatCompletionRequest) -> OutputPlan:
    """The constraint for `response_format` / `tools` + `tool_choice`; 400 for a bad one."""
    tools = [t.model_dump() for t in body.tools or []]
    choice = body.tool_choice or ("auto" if tools else "none")
    fmt = body.response_format
    if tools and choice != "none":
        if fmt is not None and fmt.type != "text":
            raise APIError(400, "Use either tools or response_format, not both.",
                           param="response_format")
        if not isinstance(choice, str):
            name = choice.function.get("name")
            tools = [t for t in tools if t["function"]["name"] == name]
            if not tools:
                raise APIError(400, f"tool_choice names the function {name!r}, which is not "
                                    "in tools.", param="tool_choice")
        result = OutputPlan(tool_call_schema(tools), TRIGGER if choice == "auto" else None,
                            whole_is_call=choice != "auto", tools=True)
        return _checked(result, "tools")
    if fmt is None or fmt.type == "text":
        return OutputPlan()
    if fmt.type == "json_object":
        return OutputPlan({"type": "object"})
    if fmt.json_schema is None:
        raise APIError(400, "response_format of type json_schema needs a json_schema "
                            "{\"name\", \"schema\"}.", param="response_format")
    return _checked(OutputPlan(fmt.json_schema.schema_ or {"type": "object"}),
                    "response_format")


def _checked(result: OutputPlan, param: str) -> OutputPlan:
    try:
        compile_schema(result.json_schema)
    except ParrotError as err:
        raise APIError(400, err.message, param=param, code="unsupported_schema") from None
    return result


def message(text: str, output: OutputPlan) -> tuple[dict, bool]:
    """The assistant message for a finished reply, and whether it holds tool calls."""
    if not output.tools:
        return {"role": "assistant", "content": text}, False
    content, calls, _ = parse_tool_calls(text, output.whole_is_call)
    if not calls:
        return {"role": "assistant", "content": text}, False
    return {"role": "assistant", "content": content or None, "tool_calls": calls}, True


class CallStream:
    """Turns a streamed reply into chat deltas: text as content until the reply turns out to be
    a tool call, then the call as tool-call deltas (id and name, then argument pieces)."""

    def __init__(self, output: OutputPlan) -> None:
        self.output, self.text, self.sent, self.call = output, "", 0, None
        self.in_call = output.whole_is_call

    def push(self, delta: str) -> list[dict]:
        self.text += delta
        if not self.output.tools:
            self.sent = len(self.text)
            return [{"content": delta}] if delta else []
        if not self.in_call:
            stripped = self.text.lstrip()
            if stripped.startswith(TRIGGER):
                self.in_call, self.sent = True, len(self.text) - len(stripped) + len(TRIGGER)
            elif TRIGGER.startswith(stripped):
                return []  # could still become a call: hold it back
            else:
                out, self.sent = self.text[self.sent:], len(self.text)
                return [{"content": out}] if out else []
        return self._call_deltas(final=False)

    def finish(self) -> tuple[list[dict], bool]:
        """The deltas still held back, and whether the reply was a tool call."""
        if self.in_call:
            deltas = self._call_deltas(final=True)
            return deltas, self.call is not None
        rest = self.text[self.sent:]
        return ([{"content": rest}] if rest else []), False

    def _call_deltas(self, final: bool) -> list[dict]:
        body = self.text[self.sent:]
        if self.call is None:
            marker = body.find('"arguments":')
            if marker < 0:
                return self._unparsed(body) if final else []
            _, calls, _ = parse_tool_calls(body[:marker].rstrip(", ") + ', "arguments": {}}',
                                                 whole_is_call=True)
            if not calls:
                return self._unparsed(body) if final else []
            self.call = calls[0]
            self.sent += marker + len('"arguments":')
            first = {"index": 0, "id": self.call["id"], "type": "function",
                     "function": {"name": self.call["function"]["name"], "arguments": ""}}
            return [{"tool_calls": [first]}, *self._call_deltas(final)]
        body = self.text[self.sent:]
        piece = body.rstrip().removesuffix("</tool_call>").rstrip() if final else body[:-1]
        if final:
            piece = piece[:-1] if piece.endswith("}") else piece  # the call object's own brace
        self.sent += len(piece)
        return [{"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}] if piece else []

    def _unparsed(self, body: str) -> list[dict]:
        self.in_call = False
        return [{"content": self.text}] if self.text else []
