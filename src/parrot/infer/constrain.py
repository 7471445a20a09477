"""Token masks from a JSON schema: at each step only tokens that keep the output a prefix of
a matching document may be chosen, so the finished text always parses and matches.

A `JsonGrammar` joins a compiled schema (`infer.json_schema`) with a vocabulary. A state is
the set of matcher stacks the text so far can be in. The mask of a state is found by walking
a trie of the tokens' bytes with the matcher, pruning a whole subtree at the first byte that
fits nowhere; masks are cached per state and shared by every request with the same schema.
Inside a string almost every token fits, so there the walk covers only the tokens holding a
quote, a backslash, a control byte or part of a character, and the rest are allowed at once
(in a string with a maxLength, those short enough for the room left).

Near the end of the token budget, a token is allowed only if the shortest completion of the
document after it (`completion`) still fits in the tokens left, one byte per token at worst,
so even a request that reaches `max_tokens` ends in valid JSON.
Special tokens are never allowed inside the document; the end-of-sequence ids only once it is
complete.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from parrot.infer.json_schema import Node, String, compile_schema

State = frozenset


class _Trie:
    __slots__ = ("children", "ids")

    def __init__(self) -> None:
        self.children: dict[int, _Trie] = {}
        self.ids: list[int] = []

    def add(self, data: bytes, token_id: int) -> None:
        node = self
        for byte in data:
            node = node.children.setdefault(byte, _Trie())
        node.ids.append(token_id)


def _plain_string_bytes(data: bytes) -> bool:
    """True for tokens that leave a free string's state as it was: whole UTF-8 characters,
    no quote, backslash or control byte."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(b >= 0x20 and b not in (0x22, 0x5C) for b in data)


class JsonGrammar:
    """A schema's matcher over one vocabulary, with per-state mask caches."""

    def __init__(self, schema: Any, token_bytes: Sequence[bytes | None], width: int,
                 eos_ids: Iterable[int]) -> None:
        self.root: Node = compile_schema(schema)
        self.width, self.eos_ids = width, sorted(eos_ids)
        self.trie, self.special_trie = _Trie(), _Trie()
        self.plain = torch.zeros(width, dtype=torch.bool)
        self.chars = torch.zeros(width, dtype=torch.long)  # characters in each plain token
        for token_id, data in enumerate(token_bytes):
            if not data or token_id >= width:
                continue
            self.trie.add(data, token_id)
            if _plain_string_bytes(data):
                self.plain[token_id] = True
                self.chars[token_id] = len(data.decode("utf-8"))
            else:
                self.special_trie.add(data, token_id)
        self._feeds: dict[tuple, tuple] = {}
        self._masks: dict[tuple[State, int | None], torch.Tensor] = {}
        self._finish: dict[State, int] = {}

    # ---- the matcher over stacks ----------------------------------------------------

    def start(self) -> State:
        return frozenset({((self.root, self.root.start),)})

    def _feed(self, stack: tuple, byte: int) -> tuple:
        key = (stack, byte)
        if key not in self._feeds:
            self._feeds[key] = tuple(self._feed_uncached(stack, byte))
        return self._feeds[key]

    def _feed_uncached(self, stack: tuple, byte: int) -> list[tuple]:
        if not stack:
            return []  # the document is complete: nothing may follow
        rest, (node, sub) = stack[:-1], stack[-1]
        out: list[tuple] = []
        for outcome in node.feed(sub, byte):
            kind = outcome[0]
            if kind == "stay":
                out.append((*rest, (node, outcome[1])))
            elif kind == "done":
                out.append(rest)
            elif kind == "push":
                child = outcome[2]
                out += self._feed((*rest, (node, outcome[1]), (child, child.start)), byte)
            elif kind == "become":
                out += self._feed((*rest, (outcome[1], outcome[1].start)), byte)
            else:  # "pass": complete without this byte; the parent reads it
                out += self._feed(rest, byte)
        return out

    def step(self, state: State, data: bytes) -> State:
        """The state after the bytes `data` (empty when they cannot appear here)."""
        for byte in data:
            state = frozenset(s for stack in state for s in self._feed(stack, byte))
            if not state:
                break
        return state

    def complete(self, state: State) -> bool:
        """True when the text so far is a whole document (a number may end without a byte)."""
        return any(not stack or (len(stack) == 1 and stack[0][0].can_pass(stack[0][1]))
                   for stack in state)

    def completion(self, state: State) -> bytes:
        """The shortest bytes that finish the document from `state`."""
        return min((b"".join(node.finish(sub) for node, sub in reversed(stack))
                    for stack in state), key=len)

    # ---- masks ----------------------------------------------------------------------

    def mask(self, state: State, budget: int | None = None) -> torch.Tensor:
        """(width,) bool: the tokens allowed in `state`. With a `budget` (tokens left), only
        tokens after which the shortest completion still fits in one byte per token."""
        key = (state, budget)
        cached = self._masks.get(key)
        if cached is None:
            cached = torch.zeros(self.width, dtype=torch.bool)
            in_string = all(stack and isinstance(stack[-1][0], String)
                            and stack[-1][1][0] == "body" for stack in state)
            # A plain token leaves a string's stack as it was (its count aside), and the
            # shortest finish can only shrink, so within budget it fits if it fits the room.
            fast = in_string and (budget is None or self._finish_length(state) < budget)
            if fast:
                for stack in state:
                    node, (_, count) = stack[-1]
                    room = None if node.max is None else node.max - count
                    cached |= self.plain if room is None else self.plain & (self.chars <= room)
            allowed: list[int] = []
            trie = self.special_trie if fast else self.trie
            self._walk(trie, state, allowed, None if budget is None else budget - 1)
            cached[allowed] = True
            if self.complete(state):
                cached[self.eos_ids] = True
            self._masks[key] = cached
        return cached

    def _finish_length(self, state: State) -> int:
        if state not in self._finish:
            self._finish[state] = len(self.completion(state))
        return self._finish[state]

    def _walk(self, trie: _Trie, state: State, allowed: list[int], left: int | None) -> None:
        for byte, child in trie.children.items():
            after = frozenset(s for stack in state for s in self._feed(stack, byte))
            if after:
                if child.ids and (left is None or self._finish_length(after) <= left):
                    allowed.extend(child.ids)
                self._walk(child, after, allowed, left)


class JsonCursor:
    """One request's place in a grammar: which tokens may come next, and advancing by one.

    Far from the end of the token budget the per-state masks are used; within `MARGIN` tokens
    of needing every remaining token to finish, masks also keep the finish within budget.

    With a `trigger`, the output is free until the trigger text appears; the document then
    starts after it (leading whitespace skipped), as llama.cpp's lazy grammars do for tool
    calls. `allowed` is None while the cursor is not active."""

    MARGIN = 128

    def __init__(self, grammar: JsonGrammar, token_bytes, trigger: str | None = None) -> None:
        self.grammar, self.token_bytes, self.state = grammar, token_bytes, grammar.start()
        self.trigger = None if trigger is None else trigger.encode()
        self.seen = b""

    def allowed(self, remaining_tokens: int) -> torch.Tensor | None:
        if self.trigger is not None:
            return None
        tight = remaining_tokens <= self.grammar._finish_length(self.state) + self.MARGIN
        mask = self.grammar.mask(self.state, remaining_tokens if tight else None)
        if tight and not mask.any():  # the budget was too small from the start: best effort
            mask = self.grammar.mask(self.state)
        return mask

    def advance(self, token_id: int) -> None:
        if token_id in self.grammar.eos_ids:
            return
        data = self.token_bytes(token_id)
        if self.trigger is None:
            self.state = self.grammar.step(self.state, data)
            return
        self.seen += data
        at = self.seen.find(self.trigger)
        if at >= 0:
            rest = self.seen[at + len(self.trigger):].lstrip()
            self.trigger, self.seen = None, b""
            self.state = self.grammar.step(self.state, rest) or self.state


def schema_key(schema: Any) -> str:
    """A canonical text for a schema, to share one compiled grammar between requests."""
    return json.dumps(schema, sort_keys=True)


class Grammars:
    """The compiled grammars of one vocabulary, by schema (the most recent `size` kept)."""

    def __init__(self, tokenizer: Any, width: int, eos_ids: Iterable[int], size: int = 32) -> None:
        self.tokenizer, self.width, self.eos_ids, self.size = tokenizer, width, set(eos_ids), size
        self._bytes: list[bytes | None] | None = None
        self._grammars: dict[str, JsonGrammar] = {}

    def token_bytes(self) -> list[bytes | None]:
        """Each id's bytes; None for special tokens, which never appear inside a document."""
        if self._bytes is None:
            special = set(getattr(self.tokenizer, "special_tokens", {}).values())
            count = min(self.tokenizer.vocab_size, self.width)
            self._bytes = [None if i in special else self.tokenizer.token_bytes(i)
                           for i in range(count)]
        return self._bytes

    def cursor(self, schema: Any, trigger: str | None = None) -> JsonCursor:
        key = schema_key(schema)
        grammar = self._grammars.pop(key, None)
        if grammar is None:
            grammar = JsonGrammar(schema, self.token_bytes(), self.width, self.eos_ids)
        self._grammars[key] = grammar  # most recently used last
        while len(self._grammars) > self.size:
            self._grammars.pop(next(iter(self._grammars)))
        return JsonCursor(grammar, self.tokenizer.token_bytes, trigger)


def mask_rows(logits: torch.Tensor, rows: Sequence[tuple[int, JsonCursor, int]]) -> torch.Tensor:
    """A copy of (n, V) logits with each constrained row's disallowed tokens at -inf;
    `rows` holds (row, cursor, tokens left). Unconstrained rows are copied, not touched."""
    masked = logits.clone()
    for row, cursor, remaining in rows:
        allowed = cursor.allowed(remaining)
        if allowed is None:
            continue
        allowed = allowed.to(logits.device)
        masked[row, : allowed.shape[0]].masked_fill_(~allowed, float("-inf"))
        masked[row, allowed.shape[0]:] = float("-inf")
    return masked
