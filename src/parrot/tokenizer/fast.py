"""Encoders: the readable reference, a cached one, and tiktoken's Rust core on our ranks.

All three give the same ids. tiktoken merges the adjacent pair whose *merged bytes* have the
lowest rank, while BPE as trained (and as Hugging Face runs it) merges the pair that was
*learned* first. The two orders agree when every token has a single recipe that tiktoken's
rule rediscovers (`tiktoken_compatible`); a vocabulary where they can differ (some foreign
`tokenizer.json` files) uses the cached pure-Python encoder instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import pairwise

import regex

from parrot.errors import ParrotError
from parrot.tokenizer.bpe import Pair, encode_chunk
from parrot.tokenizer.pretokenize import compile_pattern


@dataclass(frozen=True)
class BPETables:
    """What every encoder needs, derived once from a vocabulary and its merges."""

    pattern: str
    byte_ids: tuple[int, ...]  # id of each single byte 0..255 (-1: not in the vocabulary)
    ranks: dict[Pair, tuple[int, int]]  # pair → (merge rank, merged id)
    special_tokens: dict[str, int] = field(default_factory=dict)
    whole_tokens: dict[bytes, int] = field(default_factory=dict)  # chunks kept whole, if any


def special_set(spec: str | set[str] | frozenset[str], names: dict[str, int]) -> frozenset[str]:
    """The special tokens named by an option: "all", "none" or a set of names."""
    if spec == "all":
        return frozenset(names)
    if spec == "none":
        return frozenset()
    if isinstance(spec, str):
        raise ParrotError(f"special-token option {spec!r} must be 'all', 'none' or a set.")
    unknown = sorted(set(spec) - set(names))
    if unknown:
        raise ParrotError(f"{unknown} are not special tokens of this tokenizer.")
    return frozenset(spec)


@lru_cache(maxsize=64)
def special_splitter(specials: frozenset[str]) -> regex.Pattern | None:
    """A regex that finds and captures any of `specials` (longest first, so "<a><b>" beats
    "<a>"; `split` keeps the matches at odd indices); None when there are none."""
    if not specials:
        return None
    alternatives = "|".join(regex.escape(s) for s in sorted(specials, key=lambda s: (-len(s), s)))
    return regex.compile(f"({alternatives})")


class ReferenceEncoder:
    """The readable path: split out allowed specials, pre-tokenize, run BPE per chunk."""

    def __init__(self, tables: BPETables) -> None:
        self.tables = tables
        self._split = compile_pattern(tables.pattern).findall

    def encode(self, text: str, allowed: frozenset[str]) -> list[int]:
        splitter = special_splitter(allowed)
        parts = splitter.split(text) if splitter else [text]
        ids: list[int] = []
        for i, part in enumerate(parts):
            if i % 2:  # odd parts are the special tokens the splitter matched
                ids.append(self.tables.special_tokens[part])
            else:
                for chunk in self._split(part):
                    ids.extend(self.encode_chunk(chunk))
        return ids

    def encode_chunk(self, chunk: str) -> list[int]:
        raw = chunk.encode("utf-8")
        if raw in self.tables.whole_tokens:
            return [self.tables.whole_tokens[raw]]
        ids = [self.tables.byte_ids[b] for b in raw]
        if -1 in ids:
            missing = raw[ids.index(-1)]
            raise ParrotError(
                f"this tokenizer has no token for byte 0x{missing:02x}, so it cannot encode {chunk!r}."
            )
        return encode_chunk(ids, self.tables.ranks)

    def encode_batch(self, texts: list[str], allowed: frozenset[str]) -> list[list[int]]:
        return [self.encode(text, allowed) for text in texts]


class CachedEncoder(ReferenceEncoder):
    """The reference encoder with a memo of chunk → ids (text repeats its words a lot)."""

    def __init__(self, tables: BPETables, max_entries: int = 1 << 18) -> None:
        super().__init__(tables)
        self._cache: dict[str, list[int]] = {}
        self._max_entries = max_entries

    def encode_chunk(self, chunk: str) -> list[int]:
        ids = self._cache.get(chunk)
        if ids is None:
            ids = super().encode_chunk(chunk)
            if len(self._cache) >= self._max_entries:
                self._cache.clear()
            self._cache[chunk] = ids
        return ids


class TiktokenEncoder:
    """Our ranks inside a `tiktoken.Encoding` (built locally: nothing is downloaded)."""

    def __init__(self, tables: BPETables, token_bytes: Sequence[bytes]) -> None:
        import tiktoken  # lazily: `import parrot.tokenizer` must not load it

        specials = set(tables.special_tokens.values())
        ranks = {b: i for i, b in enumerate(token_bytes) if i not in specials}
        self._encoding = tiktoken.Encoding(
            name="parrot",
            pat_str=tables.pattern,
            mergeable_ranks=ranks,
            special_tokens=dict(tables.special_tokens),
        )

    def encode(self, text: str, allowed: frozenset[str]) -> list[int]:
        if not allowed:  # the plain path skips tiktoken's search for special tokens
            return self._encoding.encode_ordinary(text)
        return self._encoding.encode(text, allowed_special=allowed, disallowed_special=())

    def encode_batch(self, texts: list[str], allowed: frozenset[str]) -> list[list[int]]:
        if not allowed:
            return self._encoding.encode_ordinary_batch(texts)
        return self._encoding.encode_batch(texts, allowed_special=allowed, disallowed_special=())


def tiktoken_compatible(tables: BPETables, token_bytes: Sequence[bytes]) -> bool:
    """True when tiktoken's rule (fuse the pair whose merged bytes rank lowest) can stand in
    for learned-merge order on this vocabulary.

    Checks: all 256 bytes present; every multi-byte token made by exactly one merge, with
    merged ids rising with merge rank (tiktoken uses the id as the rank); and for each token,
    tiktoken's rule on its own bytes, with only earlier tokens available, ends in exactly the
    two halves of its recipe (as minbpe recovers merges from tiktoken ranks). Vocabularies
    trained by BPE pass; hand-made or edited ones may not, and then use `CachedEncoder`.
    """
    if -1 in tables.byte_ids or len(set(tables.byte_ids)) != 256:
        return False
    merged = sorted(tables.ranks.values())
    if any(later[1] <= earlier[1] for earlier, later in pairwise(merged)):
        return False
    specials = set(tables.special_tokens.values())
    made = {new_id for _, new_id in merged}
    known = made | set(tables.byte_ids) | specials
    if len(known) != len(token_bytes):  # a token no merge makes: tiktoken could still emit it
        return False
    rank_of = {token_bytes[i]: i for i in made}
    return all(
        _tiktoken_split(token_bytes[new_id], rank_of, new_id) == [token_bytes[a], token_bytes[b]]
        for (a, b), (_, new_id) in tables.ranks.items()
    )


def _tiktoken_split(piece: bytes, rank_of: dict[bytes, int], below: int) -> list[bytes]:
    """tiktoken's rule on `piece` using only tokens of rank < `below`: fuse the lowest-ranked
    adjacent pair until none is left; returns the parts."""
    parts = [piece[i : i + 1] for i in range(len(piece))]
    while len(parts) > 1:
        best, best_rank = -1, below
        for i in range(len(parts) - 1):
            rank = rank_of.get(parts[i] + parts[i + 1], below)
            if rank < best_rank:
                best, best_rank = i, rank
        if best < 0:
            break
        parts[best : best + 2] = [parts[best] + parts[best + 1]]
    return parts
