"""Token ids → text, one token at a time, without ever splitting a character.

A byte-level BPE token may hold half of a multi-byte UTF-8 character (an emoji often
spans two or three tokens). Decoding each token alone would print replacement marks;
an incremental UTF-8 decoder keeps the unfinished bytes until the character completes.
The concatenated output equals `bytes.decode("utf-8", errors="replace")` of all bytes.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable


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
