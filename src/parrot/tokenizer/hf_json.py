"""What the three `tokenizer.json` formats share: byte-level BPE (`io.py`), SentencePiece-
style BPE (`spm_json.py`) and WordPiece (`wordpiece_io.py`) read and write their files
through these helpers."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from parrot.errors import ParrotError


def read_json_file(path: Path, what: str = "tokenizer.json") -> Any:
    """The JSON value in `path`; ParrotError naming `what` when it cannot be read."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ParrotError(f"{path} is not a readable {what} ({err}).") from None


def by_id(entries: Iterable[tuple[Any, int]], size: int, where: str) -> list[Any]:
    """id → value from (value, id) pairs, later pairs winning; ParrotError when an id below
    `size` is left without a value."""
    table: list[Any] = [None] * size
    for value, i in entries:
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
