"""Retrieval on the chat API (`parrot serve --rag STORE`): a search route and an extension
field on chat completions.

POST /v1/rag/search  {"query": str, "k": 5, "mode": "hybrid"|"vector"|"keyword",
                      "path_prefix": str?, "kinds": [str]?}
    → {"object": "list", "data": [{"rank", "id", "score", "path", "kind", "start", "end",
                                   "text"}, ...]}

POST /v1/chat/completions accepts one extra field, `rag` (parrot's extension; OpenAI
clients send it through `extra_body={"rag": {...}}`):

    "rag": {"enabled": true, "k": 4, "mode": "hybrid", "path_prefix": null, "kinds": []}
    (or `true` / `false`; absent means enabled with the server's defaults)

When enabled, passages are retrieved for the last user message and the prompt follows
parrot.rag.prompt (rules — the client's system message appended to them — earlier turns,
then numbered passages and the question), tokenized with passages as plain text. A
non-streamed answer carries `"rag": {"passages": [...], "cited": [n, ...]}`; a streamed
one does not (call /v1/rag/search for the passages). With `"rag": false` the request is
served exactly as without --rag. `response_format` and `tool_choice` constrain the answer
either way (serve/tools.py); the tools' descriptions reach the prompt only without
retrieval, since the grounded prompt has its own layout.
"""

from __future__ import annotations

import threading
from typing import Any, Literal

from fastapi import FastAPI, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from parrot.chat import render, special_tokens_text
from parrot.errors import ParrotError
from parrot.serve import generation, responses, tools
from parrot.serve.errors import APIError
from parrot.serve.routes import check_context, read_body, sampling, served
from parrot.serve.schemas import ChatCompletionRequest
from parrot.serve.streams import chat_stream

Mode = Literal["hybrid", "vector", "keyword", "bm25"]


class RagOptions(BaseModel):
    enabled: bool = True
    k: int | None = Field(None, ge=1, le=50)
    mode: Mode | None = None
    path_prefix: str | None = None
    kinds: list[str] = []


class RagChatRequest(ChatCompletionRequest):
    rag: RagOptions | bool | None = None


class SearchRequest(BaseModel):
    query: str
    k: int = Field(5, ge=1, le=100)
    mode: Mode | None = None
    path_prefix: str | None = None
    kinds: list[str] = []


class RagService:
    """The store and its embedder, opened on first use and searched one query at a time
    (a SQLite or PostgreSQL connection is not shared between threads at once)."""

    def __init__(self, store: str, home: str | None, k: int = 4, mode: str = "hybrid") -> None:
        self.spec, self.home, self.k, self.mode = store, home, k, mode
        self._lock = threading.Lock()
        self._opened: tuple[Any, Any] | None = None

    def search(self, query: str, k: int | None, mode: str | None, path_prefix: str | None,
               kinds: list[str]) -> list[Any]:
        from parrot.rag import Filters, embedder_for, open_store
        from parrot.rag.retrieve import search

        with self._lock:
            if self._opened is None:
                store = open_store(self.spec, create=False)
                self._opened = (store, embedder_for(store, home=self.home))
            store, embedder = self._opened
            return search(store, embedder, query, k or self.k, mode or self.mode,
                          Filters(path_prefix, tuple(kinds)))


def _service(request: Request) -> RagService:
    return request.app.state.parrot_rag


async def _retrieve(request: Request, query: str, options: RagOptions) -> list[Any]:
    try:
        return await run_in_threadpool(_service(request).search, query, options.k,
                                       options.mode, options.path_prefix, options.kinds)
    except ParrotError as err:
        raise APIError(400, err.message) from None


async def rag_search(request: Request) -> Any:
    body = await read_body(request, SearchRequest)
    hits = await _retrieve(request, body.query, RagOptions(k=body.k, mode=body.mode,
                                                           path_prefix=body.path_prefix,
                                                           kinds=body.kinds))
    return {"object": "list", "data": [h.to_dict() for h in hits]}


def _options(value: RagOptions | bool | None) -> RagOptions:
    if isinstance(value, RagOptions):
        return value
    return RagOptions(enabled=value is not False)


def _grounded_ids(messages: list[dict], hits: list[Any], loaded: Any, room: int
                  ) -> tuple[list[int], list[Any]]:
    from parrot.rag.prompt import RULES, build_messages, fit_passages, prompt_ids

    system = "\n\n".join([RULES] + [m["content"] for m in messages if m["role"] == "system"])
    turns = [m for m in messages if m["role"] != "system"]
    question, history = turns[-1]["content"], turns[:-1]

    def ids(chosen):
        return prompt_ids(build_messages(question, chosen, history, system), loaded.tokenizer,
                          loaded.template)
    kept = fit_passages(hits, lambda chosen: len(ids(chosen)), room)
    return ids(kept), kept


async def rag_chat_completions(request: Request) -> Any:
    """POST /v1/chat/completions with the `rag` extension (see the module docstring)."""
    from parrot.rag.prompt import citations

    body = await read_body(request, RagChatRequest)
    name, loaded, worker = served(request, body.model)
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                for m in body.messages]
    options, max_len, kept = _options(body.rag), worker.engine.max_len, None
    try:
        if options.enabled and messages[-1]["role"] == "user":
            hits = await _retrieve(request, messages[-1]["content"], options)
            room = max_len - min(body.max_completion_tokens or body.max_tokens or 256,
                                 max_len // 2)
            ids, kept = _grounded_ids(messages, hits, loaded, room)
        else:  # as without --rag, tools included
            plain, extra = tools.messages_for(body, loaded.template.source)
            text = render(plain, loaded.template, True, **special_tokens_text(loaded.tokenizer),
                          **extra)
            ids = loaded.tokenizer.encode(text, allowed_special="all")
    except ParrotError as err:
        raise APIError(400, err.message, param="messages") from None
    check_context(ids, max_len)
    limit = body.max_completion_tokens or body.max_tokens or max_len - len(ids)
    prompts = [(ids, sampling(body, limit, i, loaded.template.stop)) for i in range(body.n)]
    output = tools.plan(body)  # response_format and tool calls work with retrieval too
    constraint = {} if output.json_schema is None else {
        "json_schema": output.json_schema, "json_trigger": output.trigger}
    ticket = generation.submit(worker, prompts, None, constraint)
    if body.stream:
        return chat_stream(worker, ticket, request, body, name, len(ids), loaded.tokenizer,
                           output)
    choices = await generation.collect(worker, ticket, request)
    shaped = []
    for c in choices:
        reply, called = tools.message("".join(c.text), output)
        shaped.append({"index": c.index, "message": reply, "logprobs": None,
                       "finish_reason": "tool_calls" if called else c.finish_reason})
    out = {**responses.envelope("chat.completion", responses.new_id("chatcmpl"), name, shaped),
           "usage": responses.usage(len(ids), sum(len(c.token_ids) for c in choices))}
    if kept is not None:
        first = "".join(choices[0].text)
        out["rag"] = {"passages": [h.to_dict() for h in kept],
                      "cited": citations(first, len(kept))}
    return out


def enable_rag(app: FastAPI, store: str, home: str | None, k: int = 4,
               mode: str = "hybrid") -> None:
    """Serve /v1/rag/search and put the `rag` extension on /v1/chat/completions."""
    app.state.parrot_rag = RagService(store, home, k, mode)
    app.router.routes = [r for r in app.router.routes
                         if getattr(r, "path", None) != "/v1/chat/completions"]
    app.add_api_route("/v1/chat/completions", rag_chat_completions, methods=["POST"])
    app.add_api_route("/v1/rag/search", rag_search, methods=["POST"])
