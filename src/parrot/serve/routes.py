"""The endpoint handlers: parse and check a request, run it on the worker, shape the answer.

Bodies are read and parsed here (not by FastAPI's injection) so that a malformed JSON
body, a body that is too large and a wrong field type all answer in the OpenAI error shape.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from parrot.chat import render, special_tokens_text
from parrot.errors import ParrotError
from parrot.infer import SamplingParams
from parrot.serve import generation, images, responses, tools
from parrot.serve.errors import APIError, validation_error
from parrot.serve.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    TokenizeRequest,
)
from parrot.serve.streams import chat_stream, completion_stream, completions_body

Body = TypeVar("Body", bound=BaseModel)


async def read_body(request: Request, schema: type[Body]) -> Body:
    """The JSON body validated against `schema`: 413 if too large, 408 if it arrives too
    slowly, 400 if malformed (invalid UTF-8, nested too deeply, not an object)."""
    settings = request.app.state.parrot.settings
    limit = settings.max_body_bytes
    too_large = APIError(413, f"The request body is larger than {limit} bytes; send less.")
    declared = request.headers.get("content-length") or "0"
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    raw = bytearray()
    try:
        async with asyncio.timeout(settings.body_timeout):
            async for chunk in request.stream():
                raw += chunk
                if len(raw) > limit:  # a body that declared less, or nothing, is cut off
                    raise too_large
    except TimeoutError:
        raise APIError(408, f"The request body did not arrive within {settings.body_timeout:g}"
                            " s; send it at once.", code="request_timeout") from None
    try:
        data = json.loads(raw.decode("utf-8"))  # strict: json.loads(bytes) admits surrogates
    except (ValueError, UnicodeDecodeError):
        raise APIError(400, "The request body is not valid JSON (UTF-8); send a JSON object.",
                       code="invalid_json") from None
    except RecursionError:
        raise APIError(400, "The request body nests JSON too deeply; send a flatter object.",
                       code="invalid_json") from None
    if not isinstance(data, dict):
        raise APIError(400, "The request body must be a JSON object.", code="invalid_json")
    try:
        return schema.model_validate(data)
    except ValidationError as err:
        raise validation_error(err.errors()) from None


def served(request: Request, model: str | None = None):
    """(served model name, loaded, worker) once the model is ready; 404 for another name."""
    state = request.app.state.parrot
    loaded, worker = state.ready()
    name = state.settings.model_name
    if model is not None and model != name:
        raise APIError(404, f"The model '{model}' does not exist here; this server serves "
                            f"'{name}'.", param="model", code="model_not_found")
    return name, loaded, worker


def sampling(body: ChatCompletionRequest | CompletionRequest, limit: int, index: int,
             extra_stop: tuple[str, ...] = ()) -> SamplingParams:
    """The engine's parameters for choice `index` (seed + index keeps n choices distinct)."""
    try:
        return SamplingParams(
            temperature=1.0 if body.temperature is None else body.temperature,
            top_p=body.top_p or 1.0, top_k=body.top_k or 0, min_p=body.min_p or 0.0,
            repetition_penalty=body.repetition_penalty or 1.0,
            presence_penalty=body.presence_penalty, frequency_penalty=body.frequency_penalty,
            seed=None if body.seed is None else body.seed + index,
            max_new_tokens=max(1, limit), stop=(*body.stop, *extra_stop),
            ignore_eos=body.ignore_eos,
        )
    except ParrotError as err:
        raise APIError(400, err.message) from None


def check_context(ids: list[int], max_len: int) -> None:
    if not ids:
        raise APIError(400, "The prompt is empty; send at least one token of text.",
                       param="prompt")
    if len(ids) > max_len:
        raise APIError(400, f"The prompt has {len(ids)} tokens but the model's context holds "
                            f"{max_len}; shorten it.", param="messages",
                       code="context_length_exceeded")


async def health(request: Request) -> Any:
    state = request.app.state.parrot
    if state.worker is None:
        status = "error" if state.load_error else "loading"
        raise APIError(503, state.load_error or "The model is still loading.", code=status)
    return {"status": "ok", "model": state.settings.model_name, **state.worker.load()}


async def list_models(request: Request) -> Any:
    name, _, worker = served(request)
    return {"object": "list", "data": [{
        "id": name, "object": "model", "created": int(time.time()),
        "owned_by": "parrot", "max_model_len": worker.engine.max_len}]}


async def chat_completions(request: Request) -> Any:
    body = await read_body(request, ChatCompletionRequest)
    name, loaded, worker = served(request, body.model)
    output = tools.plan(body)
    messages, extra = tools.messages_for(body, loaded.template.source)
    urls = images.image_urls(body.messages)  # their text() holds an <image> per image part
    try:
        text = render(messages, loaded.template, True, **special_tokens_text(loaded.tokenizer),
                      **extra)
    except ParrotError as err:
        raise APIError(400, err.message, param="messages") from None
    ids, length = images.image_prompt(worker.engine,
                                      loaded.tokenizer.encode(text, allowed_special="all"), urls)
    max_len = worker.engine.max_len
    check_context(range(length), max_len)  # the length with image tokens expanded
    limit = body.max_completion_tokens or body.max_tokens or max_len - length
    prompts = [(ids, sampling(body, limit, i, loaded.template.stop)) for i in range(body.n)]
    top = (body.top_logprobs or 0) if body.logprobs else None
    constraint = {} if output.json_schema is None else {
        "json_schema": output.json_schema, "json_trigger": output.trigger}
    ticket = generation.submit(worker, prompts, top, constraint)
    if body.stream:
        return chat_stream(worker, ticket, request, body, name, length, loaded.tokenizer,
                           output)
    choices = await generation.collect(worker, ticket, request)
    shaped = []
    for c in choices:
        reply, called = tools.message("".join(c.text), output)
        shaped.append({"index": c.index, "message": reply, "logprobs":
                       responses.chat_logprobs(c.scored, loaded.tokenizer) if body.logprobs
                       else None, "finish_reason": "tool_calls" if called else c.finish_reason})
    return {**responses.envelope("chat.completion", responses.new_id("chatcmpl"), name, shaped),
            "usage": responses.usage(length, sum(len(c.token_ids) for c in choices))}


async def completions(request: Request) -> Any:
    body = await read_body(request, CompletionRequest)
    name, loaded, worker = served(request, body.model)
    prompts = _prompt_ids(body.prompt, loaded.tokenizer)
    for ids in prompts:
        check_context(ids, worker.engine.max_len)
    jobs = [(ids, sampling(body, body.max_tokens or 1, j)) for ids in prompts
            for j in range(body.n)]
    if body.stream:
        if body.max_tokens == 0:
            raise APIError(400, "max_tokens=0 cannot be streamed; ask for at least 1 token.",
                           param="max_tokens")
        ticket = generation.submit(worker, jobs, body.logprobs)
        return completion_stream(worker, ticket, request, body, name, prompts,
                                 loaded.tokenizer)
    return await completions_body(worker, request, body, name, prompts, jobs, loaded)


def _prompt_ids(prompt: Any, tokenizer: Any) -> list[list[int]]:
    """A text, texts, ids or lists of ids → one id list per prompt."""
    if isinstance(prompt, str):
        return [tokenizer.encode(prompt, allowed_special="all")]
    if prompt and all(isinstance(p, int) for p in prompt):
        return [list(prompt)]
    return [tokenizer.encode(p, allowed_special="all") if isinstance(p, str) else list(p)
            for p in prompt]


async def tokenize(request: Request) -> Any:
    """vLLM's /tokenize: {"count", "max_model_len", "tokens", "token_strs"}."""
    body = await read_body(request, TokenizeRequest)
    _, loaded, worker = served(request, body.model)
    text = body.prompt or ""
    if body.messages is not None:
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        text = render(messages, loaded.template, True, **special_tokens_text(loaded.tokenizer))
    ids = loaded.tokenizer.encode(text, allowed_special="all")
    return {"count": len(ids), "max_model_len": worker.engine.max_len, "tokens": ids,
            "token_strs": None}


async def detokenize(request: Request) -> Any:
    """vLLM's /detokenize: {"prompt": text}."""
    body = await read_body(request, DetokenizeRequest)
    _, loaded, _ = served(request, body.model)
    vocab = loaded.tokenizer.vocab_size
    if any(t < 0 or t >= vocab for t in body.tokens):
        raise APIError(400, f"Token ids must be in [0, {vocab}).", param="tokens")
    return {"prompt": loaded.tokenizer.decode(body.tokens)}


async def tokenizer_info(request: Request) -> Any:
    """vLLM's /tokenizer_info: the tokenizer's class, special tokens, length and template."""
    name, loaded, worker = served(request)
    tok = loaded.tokenizer
    specials = special_tokens_text(tok)
    return {"tokenizer_class": type(tok).__name__, "model_max_length": worker.engine.max_len,
            "vocab_size": tok.vocab_size, "bos_token": specials["bos_token"] or None,
            "eos_token": specials["eos_token"] or None, "pad_token": None,
            "chat_template": loaded.template.source, "model": name}
