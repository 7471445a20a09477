"""Token ids → text, one token at a time, without ever splitting a character.

A byte-level BPE token may hold half of a multi-byte UTF-8 character (an emoji often
spans two or three tokens). Decoding each token alone would print replacement marks;
an incremental UTF-8 decoder keeps the unfinished bytes until the character completes.
The concatenated output equals `bytes.decode("utf-8", errors="replace")` of all bytes.

`TextStream` is what `Engine.stream` returns: one request's text deltas, as an iterator.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from parrot.infer.engine import Engine
    from parrot.infer.requests import Completion


class IncrementalDetokenizer:
    """Feed token ids with `push`; each call returns the text that became complete."""

    def __init__(self, token_bytes: Callable[[int], bytes]) -> None:
        self._token_bytes = token_bytes
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        return self._utf8.decode(self._token_bytes(token_id))

    def flush(self) -> str:
        """Text of any bytes still waiting (an incomplete character becomes U+FFFD)."""
        return self._utf8.decode(b"", final=True)


class TextStream:
    """Iterates the text deltas of one request, stepping the engine as needed.

    Closing it early (or an exception such as Ctrl-C in the consumer) cancels the request.
    """

    def __init__(self, engine: Engine, request_id: int) -> None:
        self.engine = engine
        self.request_id = request_id
        self.completion: Completion | None = None
        self._deltas = self._run()

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        return next(self._deltas)

    def close(self) -> None:
        self._deltas.close()

    def _run(self) -> Iterator[str]:
        try:
            while self.completion is None:
                for out in self.engine.step():
                    if out.request_id != self.request_id:
                        continue
                    if out.completion is not None:
                        self.completion = out.completion
                    if out.text:
                        yield out.text
        finally:
            if self.completion is None:
                self.engine.cancel(self.request_id)
