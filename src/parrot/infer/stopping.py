"""When a request stops, and which of its text may be shown.

Four conditions end a request: an end-of-sequence token id, a stop string in the decoded
text (possibly spread over several tokens), `max_new_tokens`, and a full context. Text
that could still turn out to be the start of a stop string is held back, so a streaming
client never sees a piece of a stop string that the final answer would not contain.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from parrot.infer.sampling import SamplingParams
from parrot.infer.streaming import IncrementalDetokenizer


def longest_prefix_suffix(text: str, stops: Iterable[str]) -> int:
    """Length of the longest end of `text` that is a proper prefix of some stop string.

    "…Hello\\nUs", stops ["\\nUser:"] → 3 (the "\\nUs" might still become "\\nUser:").
    """
    best = 0
    for stop in stops:
        for k in range(min(len(text), len(stop) - 1), best, -1):
            if stop.startswith(text[-k:]):
                best = k
                break
    return best


class StopStringMatcher:
    """Finds stop strings in a stream of text deltas, holding back what might start one."""

    def __init__(self, stops: Iterable[str]) -> None:
        self.stops = tuple(stops)
        self._held = ""
        self.matched: str | None = None

    def push(self, text: str) -> tuple[str, bool]:
        """Returns (text safe to show now, whether a stop string was found).

        On a match the safe text ends right before the stop string and the rest is dropped.
        """
        buf = self._held + text
        hits = [(i, s) for s in self.stops if (i := buf.find(s)) >= 0]
        if hits:
            start, self.matched = min(hits, key=lambda hit: hit[0])
            self._held = ""
            return buf[:start], True
        hold = longest_prefix_suffix(buf, self.stops)
        self._held = buf[len(buf) - hold :]
        return buf[: len(buf) - hold], False

    def flush(self) -> str:
        """The held-back text, released because generation ended without a match."""
        held, self._held = self._held, ""
        return held


@dataclass(frozen=True)
class Delta:
    """What one new token adds: visible text, and why the request ended (None: not yet).

    finish_reason is "stop" (end token or stop string) or "length" (max_new_tokens or a
    full context); stop_reason names the token id, stop string, or "max_new_tokens"/"context".
    """

    text: str
    finish_reason: str | None = None
    stop_reason: int | str | None = None


class StopChecker:
    """Applies every stop condition of one request to its generated tokens, in order."""

    def __init__(
        self,
        params: SamplingParams,
        eos_ids: Iterable[int],
        token_bytes: Callable[[int], bytes],
        prompt_len: int,
        max_len: int,
    ) -> None:
        self.stop_ids = set(params.stop_token_ids) | (set() if params.ignore_eos else set(eos_ids))
        self.max_new_tokens = params.max_new_tokens
        self.detok = IncrementalDetokenizer(token_bytes)
        self.matcher = StopStringMatcher(params.stop)
        self.prompt_len = prompt_len
        self.max_len = max_len
        self.generated = 0

    def push(self, token_id: int) -> Delta:
        self.generated += 1
        if token_id in self.stop_ids:
            return Delta(self._release(""), "stop", token_id)
        text, matched = self.matcher.push(self.detok.push(token_id))
        if matched:
            return Delta(text, "stop", self.matcher.matched)
        if self.generated >= self.max_new_tokens:
            return Delta(self._release(text), "length", "max_new_tokens")
        # The newest token is fed at position prompt_len + generated - 1: it needs a slot.
        if self.prompt_len + self.generated > self.max_len:
            return Delta(self._release(text), "length", "context")
        return Delta(text)

    def _release(self, text: str) -> str:
        tail = self.detok.flush()
        safe, matched = self.matcher.push(tail) if tail else ("", False)
        return text + safe + ("" if matched else self.matcher.flush())
