"""The engine's own thread: continuous batching behind thread-safe queues.

`Engine` is not thread-safe, so exactly one thread touches it. Handlers (on the asyncio
event loop) put commands in an inbox; the worker takes them between engine steps, so a
new request joins the running batch at the next step and a cancelled one frees its slot
before the next step. Each step's outputs go back to the handler's asyncio queue through
`loop.call_soon_threadsafe`.

Admission control: at most `max_batch + max_queue` requests may be in flight; beyond
that `submit` raises `QueueFull` at once (the handler answers 429) rather than letting a
backlog grow without bound. A request older than `timeout` seconds is cancelled.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from parrot.chat import ChatTemplate
from parrot.infer import Engine, SamplingParams


@dataclass(frozen=True)
class Loaded:
    """What the server serves: a model, its tokenizer and the chat template to render with.

    `engine`, when given, is the engine to serve with (built by `parrot.load`, with its
    cache length and end-of-answer ids); else one is built over the model with defaults.
    """

    model: Any
    tokenizer: Any
    template: ChatTemplate
    engine: Engine | None = None


class QueueFull(Exception):
    """Too many requests in flight; the client should retry later."""


@dataclass(frozen=True)
class Event:
    """One message to a handler: a step output of choice `index`, or an error (`error`)."""

    index: int
    output: Any = None
    error: str | None = None


@dataclass
class Job:
    """One generation (one choice of one request) as the worker tracks it."""

    index: int
    ids: list[int]
    params: SamplingParams
    logprobs: int | None
    ticket: Ticket
    deadline: float
    engine_id: int | None = None
    constraint: dict = field(default_factory=dict)


@dataclass
class Ticket:
    """A client request's handle: its jobs' events arrive on `events` (on the handler's loop)."""

    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    jobs: list[Job] = field(default_factory=list)

    def put(self, event: Event) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)


class Worker:
    """Owns an Engine in a background thread; `submit`/`cancel`/`call` are safe from any thread."""

    def __init__(self, engine: Engine, max_queue: int = 64, timeout: float = 600.0) -> None:
        self.engine = engine
        self.capacity = engine.max_batch + max_queue
        self.timeout = timeout
        self._inbox: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._in_flight = 0
        self.cancelled = 0  # jobs dropped before their end (clients gone, timeouts)
        self._jobs: dict[int, Job] = {}  # engine request id → job
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="parrot-engine", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._inbox.put(("wake",))
        self._thread.join(timeout=10)

    # ---- called from handlers ------------------------------------------------------

    def submit(self, ticket: Ticket, prompts: list[tuple[list[int], SamplingParams]],
               logprobs: int | None = None, constraint: dict | None = None) -> None:
        """Queue one job per (ids, params), indexed in order; QueueFull when over capacity.
        `constraint` holds the engine's json_schema/json_trigger options for every job."""
        with self._lock:
            if self._in_flight + len(prompts) > self.capacity:
                raise QueueFull
            self._in_flight += len(prompts)
        deadline = time.monotonic() + self.timeout
        for index, (ids, params) in enumerate(prompts):
            job = Job(index, ids, params, logprobs, ticket, deadline, constraint=constraint or {})
            ticket.jobs.append(job)
            self._inbox.put(("submit", job))

    def cancel(self, ticket: Ticket) -> None:
        """Drop every unfinished job of a ticket (a client went away): slots free at once."""
        self._inbox.put(("cancel", ticket))

    def call(self, fn: Callable[[], Any]) -> concurrent.futures.Future:
        """Run `fn` on the engine thread between steps (e.g. a scoring forward pass)."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._inbox.put(("call", fn, future))
        return future

    def load(self) -> dict[str, int]:
        """How many requests run in the batch and wait in the queue (a snapshot)."""
        running = sum(s.request is not None for s in self.engine.slots)
        return {"running": running, "queued": len(self.engine.queue),
                "in_flight": self._in_flight, "cancelled": self.cancelled}

    # ---- the engine thread ---------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._take_commands(block=not self.engine.has_work())
            self._expire()
            if not self.engine.has_work():
                continue
            try:
                outputs = self.engine.step()
            except Exception as err:  # noqa: BLE001 - a failed step must not kill the server
                self._fail(list(self._jobs.values()), f"The engine failed: {err}")
                continue
            for out in outputs:
                self._deliver(out)

    def _take_commands(self, block: bool) -> None:
        """Apply every waiting command (waiting up to 0.5 s for the first when `block`)."""
        try:
            command = self._inbox.get(timeout=0.5) if block else self._inbox.get_nowait()
            while True:
                self._apply(command)  # never raises: failures are reported to the job
                command = self._inbox.get_nowait()
        except queue.Empty:
            return

    def _apply(self, command: tuple) -> None:
        kind = command[0]
        if kind == "submit":
            job = command[1]
            try:
                job.engine_id = self.engine.submit(job.ids, job.params, logprobs=job.logprobs,
                                                   **job.constraint)
            except Exception as err:  # noqa: BLE001 - reported to the client, not raised
                self._finish(job, Event(job.index, error=str(err)))
                return
            self._jobs[job.engine_id] = job
        elif kind == "cancel":
            for job in command[1].jobs:
                if job.engine_id in self._jobs:
                    self.engine.cancel(job.engine_id)
                    self.cancelled += 1
                    self._finish(job, None)
        elif kind == "call":
            _, fn, future = command
            try:
                future.set_result(fn())
            except Exception as err:  # noqa: BLE001 - the caller re-raises it
                future.set_exception(err)

    def _deliver(self, out: Any) -> None:
        job = self._jobs.get(out.request_id)
        if job is None:
            return
        if out.completion is not None:
            self._finish(job, Event(job.index, out))
        else:
            job.ticket.put(Event(job.index, out))

    def _finish(self, job: Job, event: Event | None) -> None:
        self._jobs.pop(job.engine_id, None)
        job.engine_id = -1  # finished: a later cancel must not count it again
        with self._lock:
            self._in_flight -= 1
        if event is not None:
            job.ticket.put(event)

    def _expire(self) -> None:
        now = time.monotonic()
        self._fail([j for j in self._jobs.values() if j.deadline < now], "timeout")

    def _fail(self, jobs: list[Job], message: str) -> None:
        for job in jobs:
            self.engine.cancel(job.engine_id)
            self._finish(job, Event(job.index, error=message))
