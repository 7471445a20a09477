"""Tool calls and structured output through the real `openai` client, streamed and not.

The tiny served model is random, so what it writes is noise; the constraint is what makes
every call and every document valid, which is what these tests check."""

import json

import jsonschema
import openai
import pytest
from serve_helpers import make_run_dir, serve

pytestmark = pytest.mark.slow  # a server of its own and ~40 constrained generations

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 20},
        "unit": {"enum": ["celsius", "fahrenheit"]}}, "required": ["city", "unit"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "The time in a timezone.",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 10}},
                   "required": ["zone"]}}}
ASK = [{"role": "user", "content": "What is the weather in Oslo?"}]
PERSON = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 16}, "age": {"type": "integer"},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 3}},
    "required": ["name", "age", "tags"]}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """A tiny model with room for the tools' descriptions in its context."""
    from openai import OpenAI

    live = serve(make_run_dir(tmp_path_factory.mktemp("tools") / "tiny", context_length=1024),
                 max_batch=4, max_queue=8, api_key=None)
    yield OpenAI(base_url=live.url + "/v1", api_key="unused", max_retries=0, timeout=120)
    live.stop()


def _schema_of(name):
    return {"get_weather": WEATHER, "get_time": TIME}[name]["function"]["parameters"]


def _stream_calls(stream):
    """Tool calls and the finish reason, accumulated from deltas the way openai's users do."""
    calls, finish = {}, None
    for chunk in stream:
        choice = chunk.choices[0]
        for delta in choice.delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
            call["id"] = delta.id or call["id"]
            if delta.function.name:
                call["name"] += delta.function.name
            call["arguments"] += delta.function.arguments or ""
        finish = choice.finish_reason or finish
    return list(calls.values()), finish


@pytest.mark.parametrize("seed", range(3))
def test_required_tool_choice_returns_a_valid_call(client, seed):
    r = client.chat.completions.create(model="tiny", messages=ASK, tools=[WEATHER, TIME],
                                       tool_choice="required", temperature=1.0, seed=seed,
                                       max_tokens=200)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    jsonschema.validate(json.loads(call.function.arguments), _schema_of(call.function.name))


def test_a_named_tool_choice_calls_that_tool(client):
    r = client.chat.completions.create(
        model="tiny", messages=ASK, tools=[WEATHER, TIME], max_tokens=200, temperature=1.0,
        tool_choice={"type": "function", "function": {"name": "get_time"}}, seed=4)
    [call] = r.choices[0].message.tool_calls
    assert call.function.name == "get_time"
    jsonschema.validate(json.loads(call.function.arguments), _schema_of("get_time"))


@pytest.mark.parametrize("seed", range(3))
def test_streamed_tool_call_deltas_assemble_into_a_valid_call(client, seed):
    stream = client.chat.completions.create(model="tiny", messages=ASK, tools=[WEATHER, TIME],
                                            tool_choice="required", temperature=1.0, seed=seed,
                                            max_tokens=200, stream=True)
    [call], finish = _stream_calls(stream)
    assert finish == "tool_calls" and call["id"].startswith("call_")
    jsonschema.validate(json.loads(call["arguments"]), _schema_of(call["name"]))


@pytest.mark.parametrize("stream", [False, True])
def test_the_full_tool_calling_flow(client, stream):
    first = client.chat.completions.create(model="tiny", messages=ASK, tools=[WEATHER],
                                           tool_choice="required", max_tokens=200, seed=1)
    call = first.choices[0].message.tool_calls[0]
    messages = [*ASK, {"role": "assistant", "content": None, "tool_calls": [
        {"id": call.id, "type": "function",
         "function": {"name": call.function.name, "arguments": call.function.arguments}}]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 21}'}]
    final = client.chat.completions.create(model="tiny", messages=messages, tools=[WEATHER],
                                           tool_choice="none", max_tokens=12, stream=stream,
                                           extra_body={"ignore_eos": True})
    if stream:
        text = "".join(chunk.choices[0].delta.content or "" for chunk in final)
    else:
        assert final.choices[0].finish_reason == "length"
        assert final.choices[0].message.tool_calls is None
        text = final.choices[0].message.content
    assert isinstance(text, str) and text


@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_output_always_parses_and_matches(client, stream):
    response_format = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
    for seed in range(8):
        r = client.chat.completions.create(model="tiny", messages=ASK, temperature=1.0,
                                           seed=seed, max_tokens=48, stream=stream,
                                           response_format=response_format)
        text = "".join(c.choices[0].delta.content or "" for c in r) if stream \
            else r.choices[0].message.content
        jsonschema.validate(json.loads(text), PERSON)


def test_json_object_mode_returns_an_object(client):
    r = client.chat.completions.create(model="tiny", messages=ASK, temperature=1.0, seed=3,
                                       max_tokens=40, response_format={"type": "json_object"})
    assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_a_schema_the_constraint_cannot_compile_is_a_400_naming_the_keyword(client):
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "object", "properties": {"email": {"type": "string", "format": "email"}}}}}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="tiny", messages=ASK, response_format=bad)
    assert "'format'" in caught.value.body["message"]


def test_a_named_tool_that_is_not_in_tools_is_a_400(client):
    with pytest.raises(openai.BadRequestError, match="get_date"):
        client.chat.completions.create(
            model="tiny", messages=ASK, tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "get_date"}})


def test_two_hundred_sampled_documents_all_parse_and_match(client):
    response_format = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
    texts = []
    for seed in range(25):
        r = client.chat.completions.create(model="tiny", messages=ASK, temperature=1.0, n=8,
                                           seed=100 + seed, max_tokens=48,
                                           response_format=response_format)
        texts += [choice.message.content for choice in r.choices]
    assert len(texts) == 200
    for text in texts:
        jsonschema.validate(json.loads(text), PERSON)
