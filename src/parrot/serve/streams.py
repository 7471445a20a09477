"""Streaming answers as server-sent events, and the text-completion body with echo.

A stream is a sequence of `data: {json}` events ending in `data: [DONE]`. An error after
the stream has started cannot change the status code, so it is sent as one event in the
OpenAI error shape before [DONE].
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from parrot.infer.logprobs import prompt_logprobs
from parrot.serve import generation, responses
from parrot.serve.errors import APIError
from parrot.serve.schemas import ChatCompletionRequest, CompletionRequest
from parrot.serve.tools import CallStream, OutputPlan
from parrot.serve.worker import Ticket, Worker

DONE = "data: [DONE]\n\n"


def sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def _response(kind: str, prefix: str, worker: Worker, ticket: Ticket, http: Request,
              body: ChatCompletionRequest | CompletionRequest, model: str, prompt_tokens: int,
              opening: list[dict], choices: Callable[[int, Any], list[dict]]) -> StreamingResponse:
    """The events of one request: the `opening` choices, then `choices(index, output)` for
    each engine output, then the usage when `stream_options.include_usage` asks for it."""
    rid = responses.new_id(prefix)
    usage = body.stream_options is not None and body.stream_options.include_usage

    until_last = {"usage": None} if usage else None  # what each chunk but the last carries

    def chunk(shown: list[dict], extra: dict | None = None) -> str:
        return sse(responses.envelope(kind, rid, model, shown, extra or until_last))

    async def chunks() -> AsyncIterator[str]:
        generated = 0
        try:
            for choice in opening:
                yield chunk([choice])
            async for event in generation.events(worker, ticket, http):
                generated += 1
                for choice in choices(event.index, event.output):
                    yield chunk([choice])
            if usage:
                yield chunk([], {"usage": responses.usage(prompt_tokens, generated)})
        except APIError as err:
            yield sse(err.body())
        finally:
            worker.cancel(ticket)  # a client that left mid-stream frees its slot now
        yield DONE

    return StreamingResponse(chunks(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def chat_stream(worker: Worker, ticket: Ticket, http: Request, body: ChatCompletionRequest,
                model: str, prompt_tokens: int, tokenizer: Any,
                output: OutputPlan | None = None) -> StreamingResponse:
    calls = [CallStream(output or OutputPlan()) for _ in range(body.n)]

    def choice(index: int, delta: dict, finish: str | None = None, logprobs=None) -> dict:
        return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}

    def choices(index: int, out: Any) -> list[dict]:
        scored = None if not body.logprobs or out.logprobs is None else \
            responses.chat_logprobs([out.logprobs], tokenizer)
        deltas = calls[index].push(out.text)
        shown = [choice(index, delta, logprobs=scored) for delta in deltas]
        if body.logprobs and not shown:
            shown.append(choice(index, {"content": ""}, logprobs=scored))
        if out.completion is not None:
            held, called = calls[index].finish()
            shown += [choice(index, delta) for delta in held]
            shown.append(choice(index, {}, "tool_calls" if called
                                else out.completion.finish_reason))
        return shown

    opening = [choice(i, {"role": "assistant", "content": ""}) for i in range(body.n)]
    return _response("chat.completion.chunk", "chatcmpl", worker, ticket, http, body, model,
                     prompt_tokens, opening, choices)


def completion_stream(worker: Worker, ticket: Ticket, http: Request, body: CompletionRequest,
                      model: str, prompts: list[list[int]], tokenizer: Any) -> StreamingResponse:
    def choice(index: int, text: str, finish: str | None = None, logprobs=None) -> dict:
        return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}

    def choices(index: int, out: Any) -> list[dict]:
        lp = None
        if body.logprobs is not None and out.logprobs is not None:
            lp = responses.completion_logprobs([out.token_id], [out.logprobs], tokenizer)
        finish = None if out.completion is None else out.completion.finish_reason
        return [choice(index, out.text, finish, lp)]

    opening = [choice(k, tokenizer.decode(prompts[k // body.n]))
               for k in range(len(prompts) * body.n)] if body.echo else []
    return _response("text_completion", "cmpl", worker, ticket, http, body, model,
                     sum(len(p) for p in prompts), opening, choices)


async def completions_body(worker: Worker, http: Request, body: CompletionRequest, model: str,
                           prompts: list[list[int]], jobs: list, loaded: Any) -> dict[str, Any]:
    """A whole text completion: generated choices, with the prompt echoed and scored if asked."""
    tok = loaded.tokenizer
    if body.max_tokens == 0:
        choices = [generation.Choice(k, finish_reason="length") for k in range(len(jobs))]
    else:
        ticket = generation.submit(worker, jobs, body.logprobs)
        choices = await generation.collect(worker, ticket, http)
    echoed = prompts if body.echo else [[] for _ in prompts]  # the ids a choice's text repeats
    prompt_scores: list[list] = [[None] * len(p) for p in echoed]
    if body.echo and body.logprobs is not None:
        for i, ids in enumerate(prompts):
            future = worker.call(lambda ids=ids: prompt_logprobs(loaded.model, ids, body.logprobs))
            prompt_scores[i] = await asyncio.wrap_future(future)
    out = []
    for c in choices:
        ids, scores = echoed[c.index // body.n], prompt_scores[c.index // body.n]
        logprobs = None if body.logprobs is None else responses.completion_logprobs(
            ids + c.token_ids, [*scores, *c.scored], tok)
        out.append({"index": c.index, "text": tok.decode(ids) + "".join(c.text),
                    "logprobs": logprobs, "finish_reason": c.finish_reason})
    generated = sum(len(c.token_ids) for c in choices)
    return {**responses.envelope("text_completion", responses.new_id("cmpl"), model, out),
            "usage": responses.usage(sum(len(p) for p in prompts), generated)}
