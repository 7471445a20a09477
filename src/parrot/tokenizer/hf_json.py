"""What the three `tokenizer.json` formats share: byte-level BPE (`io.py`), SentencePiece-
style BPE (`spm_json.py`) and WordPiece (`wordpiece_io.py`) read and write their files
through these helpers."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from parrot.errors import ParrotError

# What reading a JSON document of the wrong shape raises (a list where a dict belongs, a
# string id, an id past 2^63, nesting past the interpreter's recursion limit).
MALFORMED = (KeyError, TypeError, ValueError, AttributeError, IndexError, ArithmeticError,
             RecursionError)


def read_json_file(path: Path, what: str = "tokenizer.json") -> Any:
    """The JSON value in `path`; ParrotError naming `what` when it cannot be read."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ParrotError(f"{path} is not a readable {what} "
                          f"({str(err).splitlines()[0][:160] if str(err) else 'too deep'}).") from None


def text_field(value: Any, where: str, what: str) -> str:
    """`value` when it is a string; ParrotError naming the field otherwise."""
    if not isinstance(value, str):
        raise ParrotError(f"{where} has a {what} of type {type(value).__name__}; it must be a "
                          "string.")
    return value


def added_tokens(data: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """The file's `added_tokens` entries, each checked to have a string content and an id."""
    entries = data.get("added_tokens") or []
    if not isinstance(entries, list) or not all(isinstance(t, dict) for t in entries):
        raise ParrotError(f"{where} has an added_tokens field that is not a list of objects.")
    for token in entries:
        text_field(token.get("content"), where, "added token content")
        if not isinstance(token.get("id"), int) or isinstance(token.get("id"), bool):
            raise ParrotError(f"{where} has an added token without an integer id.")
    return entries


def by_id(entries: Iterable[tuple[Any, int]], size: int, where: str) -> list[Any]:
    """id → value from (value, id) pairs, later pairs winning; ParrotError when an id below
    `size` is left without a value."""
    entries = list(entries)
    if size > len(entries):  # before allocating: a file claiming id 2^60 has ids missing
        raise ParrotError(f"{where} has {len(entries)} tokens but ids up to {size - 1}; "
                          "token ids must run from 0 without gaps.")
    table: list[Any] = [None] * size
    for value, i in entries:
        if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < size:
            raise ParrotError(f"{where} has a token id {i!r} outside [0, {size}).")
        table[i] = value
    if None in table:
        raise ParrotError(f"{where} leaves token id {table.index(None)} undefined.")
    return table


def read_merge(merge: str | list[str], id_of: dict[str, int], where: str) -> tuple[int, int]:
    """A merge ("left right", or [left, right]) → its pair of ids; ParrotError when the
    two tokens or their fusion are not in the vocabulary."""
    if isinstance(merge, str):
        left, _, right = merge.partition(" ")
    else:
        left, right = merge
    if left not in id_of or right not in id_of or left + right not in id_of:
        raise ParrotError(f"{where} has merge {left!r} + {right!r} whose tokens are missing.")
    return id_of[left], id_of[right]


def added_token(i: int, content: str, special: bool = True,
                normalized: bool = False) -> dict[str, Any]:
    """One entry of `added_tokens`: matched whole, never stripped."""
    return {"id": i, "content": content, "single_word": False, "lstrip": False,
            "rstrip": False, "normalized": normalized, "special": special}
