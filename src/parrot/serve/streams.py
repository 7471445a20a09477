"""Streaming answers as server-sent events, and the text-completion body with echo.

A stream is a sequence of `data: {json}` events ending in `data: [DONE]`. An error after
the stream has started cannot change the status code, so it is sent as one event in the
OpenAI error shape before [DONE].
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from parrot.infer.logprobs import prompt_logprobs
from parrot.serve import generation, responses
from parrot.serve.errors import APIError
from parrot.serve.schemas import ChatCompletionRequest, CompletionRequest
from parrot.serve.worker import Ticket, Worker

DONE = "data: [DONE]\n\n"


def sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def _response(chunks: AsyncIterator[str], worker: Worker, ticket: Ticket) -> StreamingResponse:
    async def body() -> AsyncIterator[str]:
        try:
            async for chunk in chunks:
                yield chunk
        except APIError as err:
            yield sse(err.body())
        finally:
            worker.cancel(ticket)  # a client that left mid-stream frees its slot now
        yield DONE

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def chat_stream(worker: Worker, ticket: Ticket, http: Request, body: ChatCompletionRequest,
                model: str, prompt_tokens: int, tokenizer: Any) -> StreamingResponse:
    rid = responses.new_id("chatcmpl")
    usage = body.stream_options is not None and body.stream_options.include_usage

    def chunk(index: int, delta: dict, finish: str | None = None, logprobs=None) -> str:
        choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        extra = {"usage": None} if usage else None
        return sse(responses.envelope("chat.completion.chunk", rid, model, [choice], extra))

    def scored(out: Any) -> dict | None:
        if not body.logprobs or out.logprobs is None:
            return None
        return responses.chat_logprobs([out.logprobs], lambda i: tokenizer.decode([i]),
                                       tokenizer.token_bytes)

    async def chunks() -> AsyncIterator[str]:
        for i in range(body.n):
            yield chunk(i, {"role": "assistant", "content": ""})
        generated = 0
        async for event in generation.events(worker, ticket, http):
            out, generated = event.output, generated + 1
            if out.text or body.logprobs:
                yield chunk(event.index, {"content": out.text}, logprobs=scored(out))
            if out.completion is not None:
                yield chunk(event.index, {}, out.completion.finish_reason)
        if usage:
            yield sse(responses.envelope("chat.completion.chunk", rid, model, [],
                                         {"usage": responses.usage(prompt_tokens, generated)}))

    return _response(chunks(), worker, ticket)


def completion_stream(worker: Worker, ticket: Ticket, http: Request, body: CompletionRequest,
                      model: str, prompts: list[list[int]], tokenizer: Any) -> StreamingResponse:
    rid = responses.new_id("cmpl")
    usage = body.stream_options is not None and body.stream_options.include_usage
    text_of = lambda i: tokenizer.decode([i])  # noqa: E731

    def chunk(index: int, text: str, finish: str | None = None, logprobs=None) -> str:
        choice = {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}
        extra = {"usage": None} if usage else None
        return sse(responses.envelope("text_completion", rid, model, [choice], extra))

    async def chunks() -> AsyncIterator[str]:
        if body.echo:
            for k in range(len(prompts) * body.n):
                yield chunk(k, tokenizer.decode(prompts[k // body.n]))
        generated = 0
        async for event in generation.events(worker, ticket, http):
            out, generated = event.output, generated + 1
            lp = None
            if body.logprobs is not None and out.logprobs is not None:
                lp = responses.completion_logprobs([out.token_id], [out.logprobs], text_of)
            finish = None if out.completion is None else out.completion.finish_reason
            yield chunk(event.index, out.text, finish, lp)
        if usage:
            total = sum(len(p) for p in prompts)
            yield sse(responses.envelope("text_completion", rid, model, [],
                                         {"usage": responses.usage(total, generated)}))

    return _response(chunks(), worker, ticket)


async def completions_body(worker: Worker, http: Request, body: CompletionRequest, model: str,
                           prompts: list[list[int]], jobs: list, loaded: Any) -> dict[str, Any]:
    """A whole text completion: generated choices, with the prompt echoed and scored if asked."""
    tok = loaded.tokenizer
    n = body.n
    if body.max_tokens == 0:
        choices = [generation.Choice(k, len(prompts[k // n]), finish_reason="length")
                   for k in range(len(jobs))]
    else:
        ticket = generation.submit(worker, jobs, body.logprobs)
        choices = await generation.collect(worker, ticket, http,
                                           [len(p) for p in prompts for _ in range(n)])
    prompt_scores: list[list] = [[None] * len(p) for p in prompts]
    if body.echo and body.logprobs is not None:
        top = body.logprobs
        for i, ids in enumerate(prompts):
            future = worker.call(lambda ids=ids: prompt_logprobs(loaded.model, ids, top))
            prompt_scores[i] = await asyncio.wrap_future(future)
    out = []
    for c in choices:
        ids = prompts[c.index // n] if body.echo else []
        scores = prompt_scores[c.index // n] if body.echo else []
        text = (tok.decode(ids) if body.echo else "") + "".join(c.text)
        logprobs = None
        if body.logprobs is not None:
            logprobs = responses.completion_logprobs(
                ids + c.token_ids, list(scores) + c.scored, lambda i: tok.decode([i]))
        out.append({"index": c.index, "text": text, "logprobs": logprobs,
                    "finish_reason": c.finish_reason})
    generated = sum(len(c.token_ids) for c in choices)
    return {**responses.envelope("text_completion", responses.new_id("cmpl"), model, out),
            "usage": responses.usage(sum(len(p) for p in prompts), generated)}
