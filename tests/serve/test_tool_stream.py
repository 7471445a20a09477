"""Reading tool calls out of replies, whole and streamed, in the default tool format."""

import json

from parrot.chat.tool_format import parse_tool_calls, tool_call_schema, with_default_tools
from parrot.serve.tools import CallStream, OutputPlan

AUTO = OutputPlan({"type": "object"}, "<tool_call>", whole_is_call=False, tools=True)
REQUIRED = OutputPlan({"type": "object"}, None, whole_is_call=True, tools=True)
CALL = '{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "celsius"}}'


def _replay(plan, pieces):
    stream, deltas = CallStream(plan), []
    for piece in pieces:
        deltas += stream.push(piece)
    held, called = stream.finish()
    return deltas + held, called


def _assembled(deltas):
    content = "".join(d.get("content", "") for d in deltas)
    calls = [c for d in deltas for c in d.get("tool_calls", [])]
    name = "".join(c["function"].get("name", "") for c in calls)
    arguments = "".join(c["function"].get("arguments", "") for c in calls)
    return content, name, arguments, calls


def test_a_streamed_call_comes_out_as_name_then_argument_pieces():
    text = "<tool_call>\n" + CALL
    deltas, called = _replay(AUTO, [text[i:i + 3] for i in range(0, len(text), 3)])
    content, name, arguments, calls = _assembled(deltas)
    assert called and content == "" and name == "get_weather"
    assert json.loads(arguments) == {"city": "Oslo", "unit": "celsius"}
    assert calls[0]["id"].startswith("call_") and len(calls) > 2


def test_plain_text_in_auto_mode_streams_as_content():
    deltas, called = _replay(AUTO, ["The weather ", "is fine."])
    assert not called and _assembled(deltas)[0] == "The weather is fine."


def test_text_that_starts_like_the_trigger_is_held_then_released():
    deltas, called = _replay(AUTO, ["<tool", "box> is a word"])
    assert not called and _assembled(deltas)[0] == "<toolbox> is a word"


def test_a_required_call_streams_without_a_trigger():
    deltas, called = _replay(REQUIRED, [CALL[:20], CALL[20:]])
    assert called and json.loads(_assembled(deltas)[2])["city"] == "Oslo"


def test_malformed_call_json_is_reported_and_left_as_content():
    content, calls, problems = parse_tool_calls('<tool_call>{"name": "f", "arguments": {]}')
    assert calls == [] and "not valid JSON" in problems[0]
    assert content.startswith("<tool_call>")


def test_calls_and_results_become_text_in_the_default_format():
    messages = with_default_tools([
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "21 C"}],
        [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}])
    assert messages[0]["role"] == "system" and "get_weather" in messages[0]["content"]
    assert '{"name": "get_weather", "arguments": {"city": "Oslo"}}' in messages[2]["content"]
    assert messages[3] == {"role": "user", "content": "<tool_response>\n21 C\n</tool_response>"}


def test_the_call_schema_names_each_tool():
    tools = [{"function": {"name": n, "parameters": {"type": "object"}}} for n in ("a", "b")]
    schema = tool_call_schema(tools)
    assert [o["properties"]["name"]["const"] for o in schema["anyOf"]] == ["a", "b"]


def test_a_template_that_knows_tools_gets_them_in_its_own_format():
    from parrot.chat import render
    from parrot.chat.templates import ChatTemplate
    from parrot.serve.schemas import ChatCompletionRequest
    from parrot.serve.tools import messages_for

    source = ("{% for t in tools %}[TOOL {{ t.function.name }}]{% endfor %}"
              "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}")
    body = ChatCompletionRequest.model_validate({"messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "get_weather"}}]})
    messages, extra = messages_for(body, source)
    text = render(messages, ChatTemplate("custom", source), True, **extra)
    assert text.startswith("[TOOL get_weather]user: hi")
    assert messages == [{"role": "user", "content": "hi"}]  # no default system prompt added
