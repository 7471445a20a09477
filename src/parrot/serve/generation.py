"""Running one API request on the worker: submit its choices, then collect or stream them.

A request's events come from the engine thread through its ticket's queue. Whatever ends
the wait (all choices done, the client gone, a cancelled stream, an error) the ticket is
cancelled in `finally`, so an abandoned request never keeps a batch slot.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from fastapi import Request

from parrot.infer import SamplingParams
from parrot.infer.logprobs import TokenLogprob
from parrot.serve.errors import APIError
from parrot.serve.worker import Event, QueueFull, Ticket, Worker

POLL_S = 0.25  # how often a waiting handler checks whether its client is still there


@dataclass
class Choice:
    """What one choice has produced so far."""

    index: int
    text: list[str] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    scored: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None

    def add(self, event: Event) -> None:
        out = event.output
        self.text.append(out.text)
        self.token_ids.append(out.token_id)
        if out.logprobs is not None:
            self.scored.append(out.logprobs)
        if out.completion is not None:
            self.finish_reason = out.completion.finish_reason


def submit(worker: Worker, prompts: list[tuple[list[int], SamplingParams]],
           logprobs: int | None, constraint: dict | None = None) -> Ticket:
    """A ticket for the request's jobs, or 429 with Retry-After when the queue is full."""
    ticket = Ticket(asyncio.get_running_loop())
    try:
        worker.submit(ticket, prompts, logprobs, constraint)
    except QueueFull:
        raise APIError(429, "The server is busy (the request queue is full); retry shortly.",
                       headers={"Retry-After": "1"}) from None
    return ticket


async def events(worker: Worker, ticket: Ticket, http: Request) -> AsyncIterator[Event]:
    """Each event of the ticket until all its jobs finish; cancels it on any early exit."""
    pending = len(ticket.jobs)
    try:
        while pending:
            try:
                event = await asyncio.wait_for(ticket.events.get(), POLL_S)
            except asyncio.TimeoutError:
                if await http.is_disconnected():
                    return
                continue
            if event.error == "timeout":
                raise APIError(504, "The request took longer than the server's timeout; ask "
                                    "for fewer tokens or raise --timeout.")
            if event.error is not None:
                raise APIError(400, event.error)
            if event.output.completion is not None:
                pending -= 1
            yield event
    finally:
        if pending:
            worker.cancel(ticket)


async def collect(worker: Worker, ticket: Ticket, http: Request) -> list[Choice]:
    """Run every job to its end; choices in index order."""
    choices = [Choice(i) for i in range(len(ticket.jobs))]
    async for event in events(worker, ticket, http):
        choices[event.index].add(event)
    if any(c.finish_reason is None for c in choices):
        raise APIError(499, "The client closed the request.")
    return choices
