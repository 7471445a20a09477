"""A JSON schema compiled into a byte-level matcher, for decoding that always parses.

The matcher is a pushdown automaton over bytes. Its state is a *stack* of frames, each a
compiled schema node with its progress (`sub`); `feed(stack, byte)` returns every stack the
byte can lead to (several, where `anyOf` or an optional property leaves a choice open; none
when the byte cannot appear there). The empty stack means the document is complete.

The language is a strict subset of the valid documents, chosen so that a small model cannot
wander: no whitespace except one optional space after ":" and ",", properties in the order
the schema lists them (optional ones may be left out), at most 15 digits per number part.
`minimal(...)` gives the shortest bytes that finish a stack, which the constraint uses to
close the document before the token budget runs out.

Supported: type (one or a list), properties, required, additionalProperties, items, minItems,
maxItems, enum, const, anyOf, oneOf (as anyOf), minLength, maxLength, nullable. Annotations
(title, description, default, examples, $schema, $id) are ignored; any other keyword is
refused with its name, because the output could not be guaranteed to match it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from parrot.errors import ParrotError

IGNORED = {"title", "description", "default", "examples", "$schema", "$id", "$comment",
           "strict", "name", "additionalProperties", "nullable"}
SUPPORTED = {"type", "properties", "required", "items", "minItems", "maxItems", "enum",
             "const", "anyOf", "oneOf", "minLength", "maxLength"} | IGNORED
MAX_DIGITS = 15
MAX_DEPTH = 6  # nesting of free-form values (json_object mode)
DIGITS = frozenset(b"0123456789")
Stack = tuple


class Node:
    """A compiled schema node. `feed(sub, byte)` yields outcomes:
    ("stay", sub) consumed, frame continues; ("done",) consumed, frame complete;
    ("push", resume_sub, child) a child node takes this byte, the frame resumes after it;
    ("become", node) this frame is replaced by `node`, which takes the byte;
    ("pass",) the frame completes without consuming; its parent takes the byte."""

    start: Any = 0

    def can_pass(self, sub: Any) -> bool:
        """True when the frame may end here without reading another byte."""
        return False

    def feed(self, sub: Any, byte: int) -> Iterator[tuple]:
        raise NotImplementedError

    def finish(self, sub: Any) -> bytes:
        """The shortest bytes that complete this frame from `sub` (children excluded)."""
        raise NotImplementedError


class Literal(Node):
    def __init__(self, text: bytes) -> None:
        self.text = text

    def feed(self, sub: int, byte: int) -> Iterator[tuple]:
        if self.text[sub] == byte:
            yield ("done",) if sub + 1 == len(self.text) else ("stay", sub + 1)

    def finish(self, sub: int) -> bytes:
        return self.text[sub:]


class String(Node):
    """A JSON string of valid UTF-8. sub = (phase, chars so far or None when no length limit
    applies); phase is "open", "body", "escape", or (bytes still to come, low, high) inside a
    multi-byte character, with the range the next byte must fall in."""

    def __init__(self, min_length: int = 0, max_length: int | None = None) -> None:
        self.min, self.max = min_length, max_length
        self.start = ("open", 0 if (min_length or max_length is not None) else None)

    def feed(self, sub: tuple, byte: int) -> Iterator[tuple]:
        phase, count = sub
        if phase == "open":
            if byte == 0x22:
                yield "stay", ("body", count)
        elif phase == "escape":
            if byte in b'"\\/bfnrt':
                yield "stay", ("body", count)
        elif isinstance(phase, tuple):
            left, low, high = phase
            if low <= byte <= high:
                yield "stay", ((left - 1, 0x80, 0xBF) if left > 1 else "body", count)
        elif byte == 0x22:
            if count is None or count >= self.min:
                yield ("done",)
        elif byte >= 0x20 and (count is None or self.max is None or count < self.max):
            after = "escape" if byte == 0x5C else utf8_continuation(byte)
            if after is not None:
                yield "stay", (after, None if count is None else count + 1)

    def finish(self, sub: tuple) -> bytes:
        phase, count = sub
        pad = b"a" * max(0, self.min - (count or 0))
        if isinstance(phase, tuple):
            return bytes([phase[1]]) + b"\x80" * (phase[0] - 1) + pad + b'"'
        return {"open": b'"' + b"a" * self.min + b'"', "escape": b"n" + pad + b'"'}.get(
            phase, pad + b'"')


def utf8_continuation(lead: int) -> str | tuple | None:
    """After a character's first byte: "body" (ASCII), the range of the next byte (bytes to
    come, low, high) for a multi-byte character, or None for a byte that cannot start one.
    The ranges exclude overlong forms, surrogates and code points past U+10FFFF."""
    if lead < 0x80:
        return "body"
    if 0xC2 <= lead <= 0xDF:
        return (1, 0x80, 0xBF)
    if 0xE0 <= lead <= 0xEF:
        return (2, 0xA0 if lead == 0xE0 else 0x80, 0x9F if lead == 0xED else 0xBF)
    if 0xF0 <= lead <= 0xF4:
        return (3, 0x90 if lead == 0xF0 else 0x80, 0x8F if lead == 0xF4 else 0xBF)
    return None


class Number(Node):
    """A JSON number (integer only, optionally). sub = (phase, digits in this part)."""

    COMPLETE = {"int", "zero", "frac", "exp"}

    def __init__(self, integer: bool) -> None:
        self.integer = integer
        self.start = ("start", 0)

    def feed(self, sub: tuple, byte: int) -> Iterator[tuple]:
        phase, digits = sub
        nxt = self._next(phase, digits, byte)
        if nxt is not None:
            yield "stay", nxt
        elif phase in self.COMPLETE:
            yield ("pass",)

    def _next(self, phase: str, digits: int, byte: int) -> tuple | None:
        digit = byte in DIGITS
        if phase in ("start", "sign"):
            if byte == 0x2D and phase == "start":
                return "sign", 0
            return (("zero", 1) if byte == 0x30 else ("int", 1)) if digit else None
        if phase in ("int", "frac", "exp") and digit:
            return (phase, digits + 1) if digits < MAX_DIGITS else None
        if phase in ("dot", "exp0", "exp1") and digit:
            return ("frac" if phase == "dot" else "exp"), 1
        if self.integer:
            return None
        if byte == 0x2E and phase in ("int", "zero"):
            return "dot", 0
        if byte in b"eE" and phase in ("int", "zero", "frac"):
            return "exp0", 0
        if byte in b"+-" and phase == "exp0":
            return "exp1", 0
        return None

    def can_pass(self, sub: tuple) -> bool:
        return sub[0] in self.COMPLETE

    def finish(self, sub: tuple) -> bytes:
        return b"" if sub[0] in self.COMPLETE else b"0"


class Choice(Node):
    def __init__(self, options: list[Node]) -> None:
        self.options = options

    def feed(self, sub: int, byte: int) -> Iterator[tuple]:
        for option in self.options:
            yield "become", option

    def finish(self, sub: int) -> bytes:
        return min((minimal_value(option) for option in self.options), key=len)


class Array(Node):
    """sub = (phase, items so far)."""

    def __init__(self, item: Node, min_items: int = 0, max_items: int | None = None) -> None:
        self.item, self.min, self.max = item, min_items, max_items
        self.start = ("open", 0)

    def feed(self, sub: tuple, byte: int) -> Iterator[tuple]:
        phase, count = sub
        if phase == "open":
            if byte == 0x5B:
                yield "stay", ("first", 0)
        elif phase in ("first", "item"):
            if phase == "first" and byte == 0x5D and self.min == 0:
                yield ("done",)
            if phase == "item" and byte == 0x20:
                yield "stay", ("value", count)
            if self.max is None or count < self.max:
                yield "push", ("next", count + 1), self.item
        elif phase == "value":
            yield "push", ("next", count + 1), self.item
        elif phase == "next":
            if byte == 0x2C and (self.max is None or count < self.max):
                yield "stay", ("item", count)
            if byte == 0x5D and count >= self.min:
                yield ("done",)

    def finish(self, sub: tuple) -> bytes:
        phase, count = sub
        missing = max(0, self.min - count)
        item = minimal_value(self.item)
        items = b",".join([item] * missing)
        if phase == "open":
            return b"[" + items + b"]"
        if phase in ("first",):
            return items + b"]"
        if phase in ("item", "value"):
            return (items or item) + b"]"
        return (b"," + items if missing else b"") + b"]"


class Object(Node):
    """An object whose properties come in the schema's order. sub = (phase, next index)."""

    def __init__(self, properties: list[tuple[str, Node, bool]]) -> None:
        self.keys = [Literal(json.dumps(name).encode() + b":") for name, _, _ in properties]
        self.values = [node for _, node, _ in properties]
        self.required = [required for _, _, required in properties]
        self.start = ("open", 0)

    def _candidates(self, index: int) -> Iterator[int]:
        """Property indices that may come next: up to and including the next required one."""
        for k in range(index, len(self.keys)):
            yield k
            if self.required[k]:
                return

    def _may_close(self, index: int) -> bool:
        return not any(self.required[index:])

    def feed(self, sub: tuple, byte: int) -> Iterator[tuple]:
        phase, index = sub
        if phase == "open":
            if byte == 0x7B:
                yield "stay", ("first", 0)
        elif phase in ("first", "key"):
            if phase == "first" and byte == 0x7D and self._may_close(index):
                yield ("done",)
            if phase == "key" and byte == 0x20:
                yield "stay", ("keyed", index)
            for k in self._candidates(index):
                yield "push", ("colon", k), self.keys[k]
        elif phase == "keyed":
            for k in self._candidates(index):
                yield "push", ("colon", k), self.keys[k]
        elif phase in ("colon", "spaced"):
            if phase == "colon" and byte == 0x20:
                yield "stay", ("spaced", index)
            yield "push", ("next", index + 1), self.values[index]
        elif phase == "next":
            if byte == 0x2C and any(True for _ in self._candidates(index)):
                yield "stay", ("key", index)
            if byte == 0x7D and self._may_close(index):
                yield ("done",)

    def finish(self, sub: tuple) -> bytes:
        phase, index = sub
        rest = [k for k in range(index, len(self.keys)) if self.required[k]]
        pairs = [self.keys[k].text + minimal_value(self.values[k]) for k in rest]
        if phase in ("colon", "spaced"):  # its value is being written: the value's own bytes
            tail = [self.keys[k].text + minimal_value(self.values[k])
                    for k in range(index + 1, len(self.keys)) if self.required[k]]
            return minimal_value(self.values[index]) + b"".join(b"," + p for p in tail) + b"}"
        body = b",".join(pairs)
        if phase in ("key", "keyed") and not pairs:  # after a comma a property must follow
            k = index
            body = self.keys[k].text + minimal_value(self.values[k])
        if phase == "open":
            return b"{" + body + b"}"
        if phase == "next":
            return b"".join(b"," + p for p in pairs) + b"}"
        return body + b"}"  # first / key / keyed: a key may start here


class FreeObject(Node):
    """Any object (json_object mode): string keys, free-form values. sub = (phase, depth)."""

    def __init__(self, depth: int) -> None:
        self.key, self.value, self.start = String(), any_value(depth + 1), ("open", 0)

    def feed(self, sub: tuple, byte: int) -> Iterator[tuple]:
        phase = sub[0]
        if phase == "open" and byte == 0x7B:
            yield "stay", ("first", 0)
        elif phase in ("first", "key", "keyed"):
            if phase == "first" and byte == 0x7D:
                yield ("done",)
            if phase == "key" and byte == 0x20:
                yield "stay", ("keyed", 0)
            elif byte == 0x22:
                yield "push", ("colon", 0), self.key
        elif phase == "colon" and byte == 0x3A:
            yield "stay", ("value", 0)
        elif phase in ("value", "spaced"):
            if phase == "value" and byte == 0x20:
                yield "stay", ("spaced", 0)
            yield "push", ("next", 0), self.value
        elif phase == "next":
            if byte == 0x2C:
                yield "stay", ("key", 0)
            if byte == 0x7D:
                yield ("done",)

    def finish(self, sub: tuple) -> bytes:
        return {"open": b"{}", "first": b"}", "next": b"}", "colon": b':""}',
                "value": b'""}', "spaced": b'""}'}.get(sub[0], b'"":""}')


def any_value(depth: int = 0) -> Node:
    """A free-form JSON value; objects and arrays only down to MAX_DEPTH."""
    options: list[Node] = [String(), Number(integer=False), Literal(b"true"), Literal(b"false"),
                           Literal(b"null")]
    if depth < MAX_DEPTH:
        options = [FreeObject(depth), Array(_Deferred(depth + 1))] + options
    return Choice(options)


class _Deferred(Node):
    """A free-form value built on first use, so nested free values cost nothing until used."""

    def __init__(self, depth: int) -> None:
        self.depth, self._node = depth, None

    def node(self) -> Node:
        if self._node is None:
            self._node = any_value(self.depth)
        return self._node

    def feed(self, sub: Any, byte: int) -> Iterator[tuple]:
        yield "become", self.node()

    def finish(self, sub: Any) -> bytes:
        return b'""'


def minimal_value(node: Node) -> bytes:
    """The shortest complete value of a node."""
    return node.finish(node.start)


def compile_schema(schema: Any, where: str = "the schema") -> Node:
    """The matcher node for a JSON schema; a ParrotError names an unsupported keyword."""
    if schema is True or schema == {}:
        return any_value()
    if not isinstance(schema, dict):
        raise ParrotError(f"{where} must be a JSON object, got {json.dumps(schema)[:60]}")
    unknown = sorted(set(schema) - SUPPORTED)
    if unknown:
        raise ParrotError(f"{where} uses the keyword {unknown[0]!r}, which constrained decoding "
                          f"does not support (supported: {', '.join(sorted(SUPPORTED - IGNORED))})")
    if "const" in schema:
        return Literal(json.dumps(schema["const"]).encode())
    if "enum" in schema:
        return Choice([Literal(json.dumps(v).encode()) for v in schema["enum"]])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return Choice([compile_schema(s, f"{where}.{key}[{i}]")
                           for i, s in enumerate(schema[key])])
    kind = schema.get("type")
    if isinstance(kind, list):
        return Choice([compile_schema({**schema, "type": k}, where) for k in kind])
    if kind is None:
        return compile_schema({**schema, "type": "object"}, where) if "properties" in schema \
            else any_value()
    return _typed(kind, schema, where)


def _typed(kind: str, schema: dict, where: str) -> Node:
    if kind == "string":
        return String(int(schema.get("minLength", 0)), schema.get("maxLength"))
    if kind in ("integer", "number"):
        return Number(integer=kind == "integer")
    if kind == "boolean":
        return Choice([Literal(b"true"), Literal(b"false")])
    if kind == "null":
        return Literal(b"null")
    if kind == "array":
        item = compile_schema(schema.get("items", {}), f"{where}.items")
        return Array(item, int(schema.get("minItems", 0)), schema.get("maxItems"))
    if kind == "object":
        properties = schema.get("properties")
        if not properties:
            return FreeObject(0)
        required = set(schema.get("required", []))
        return Object([(name, compile_schema(sub, f"{where}.properties.{name}"), name in required)
                       for name, sub in properties.items()])
    raise ParrotError(f"{where} has the type {kind!r}; use string, integer, number, boolean, "
                      "null, array or object")
