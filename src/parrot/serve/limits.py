"""What keeps one bad client from hurting the others: connection deadlines and the server
configuration that applies them.

- Slow headers (slowloris): a connection whose request line and headers are not complete
  within `header_timeout` seconds of connecting (or of its previous response) is answered
  408 and closed, so trickling clients cannot hold sockets forever.
- Slow bodies: `routes.read_body` gives the body `body_timeout` seconds (408 after).
- Oversized bodies: 413 once more than `max_body_bytes` arrive (`routes.read_body`).
- Headers over 16 KiB are refused by h11 itself (uvicorn's default limit).

None of these touch the engine: a request reaches the worker only once its body is read.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

TIMEOUT_BODY = json.dumps({"error": {
    "message": "The request headers did not arrive in time; send them at once.",
    "type": "invalid_request_error", "param": None, "code": "request_timeout"}}).encode()


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's headers."""

    header_timeout: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._expire)

    def _disarm(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the headers are in
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request on this connection gets the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _expire(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        head = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                b"connection: close\r\ncontent-length: %d\r\n\r\n" % len(TIMEOUT_BODY))
        self.transport.write(head + TIMEOUT_BODY)
        self.transport.close()


def guarded_protocol(header_timeout: float) -> type[GuardedH11Protocol]:
    """The protocol class with this header deadline (uvicorn instantiates it per connection)."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"header_timeout": header_timeout})


def server_config(app: Any, host: str, port: int, header_timeout: float = 10.0,
                  **kwargs: Any) -> uvicorn.Config:
    """uvicorn's configuration for parrot's app: the guarded h11 protocol, quiet logs."""
    kwargs.setdefault("log_level", "warning")
    return uvicorn.Config(app, host=host, port=port, http=guarded_protocol(header_timeout),
                          **kwargs)


def key_matches(authorization: str, key: str) -> bool:
    """Whether an Authorization header carries `key`, compared in constant time (the time
    taken does not reveal how many leading characters were right)."""
    return hmac.compare_digest(authorization.encode("utf-8", "surrogateescape"),
                               f"Bearer {key}".encode("utf-8", "surrogateescape"))
