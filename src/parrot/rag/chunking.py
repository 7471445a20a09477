"""Chunking: a document's text → passages of at most `max_tokens` embedding-model tokens.

    text → segments (paragraphs; a paragraph too long → sentences; a sentence too long →
           word runs) → packed greedily into chunks ≤ max_tokens → the next chunk starts
           `overlap` tokens' worth of whole segments back

A chunk is always a slice `text[start:end]` ending on a segment boundary, so its character
offsets point at the exact passage in the source and chunks break at paragraph or sentence
ends whenever one is close enough. Token counts come from the embedding model's tokenizer
(a segment's count; a chunk's count is the sum of its segments', which is exact for
WordPiece, where whitespace never forms a token).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from parrot.errors import ParrotError

CountTokens = Callable[[Sequence[str]], list[int]]

_PARAGRAPH = re.compile(r"\n[ \t]*\n\s*")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=\S)")
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Chunk:
    """A passage: `text == source[start:end]`, and how many tokens it holds."""

    text: str
    start: int
    end: int
    tokens: int


@dataclass(frozen=True)
class ChunkConfig:
    """Chunk size and overlap in embedding-model tokens."""

    max_tokens: int = 200
    overlap: int = 32

    def __post_init__(self) -> None:
        if self.max_tokens < 8:
            raise ParrotError(f"chunk size must be at least 8 tokens, got {self.max_tokens}.")
        if not 0 <= self.overlap < self.max_tokens:
            raise ParrotError(f"overlap must be between 0 and the chunk size "
                              f"({self.max_tokens}), got {self.overlap}.")


def _spans(pattern: re.Pattern, text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The pieces of text[start:end] between matches of a separator `pattern`, stripped."""
    out, pos = [], start
    for match in pattern.finditer(text, start, end):
        out.append((pos, match.start()))
        pos = match.end()
    out.append((pos, end))
    stripped = []
    for a, b in out:
        piece = text[a:b]
        lead = len(piece) - len(piece.lstrip())
        trail = len(piece.rstrip())
        if trail > lead:
            stripped.append((a + lead, a + trail))
    return stripped


def _word_runs(text: str, span: tuple[int, int], count: CountTokens,
               limit: int) -> list[tuple[int, int, int]]:
    """A too-long sentence cut into runs of whole words of at most `limit` tokens each
    (a single word longer than that stays one run, and is cut by the embedder)."""
    words = [(m.start(), m.end()) for m in _WORD.finditer(text, *span)]
    counts = count([text[a:b] for a, b in words])
    runs, first, total = [], 0, 0
    for i, n in enumerate(counts):
        if total + n > limit and i > first:
            runs.append((words[first][0], words[i - 1][1], total))
            first, total = i, 0
        total += n
    runs.append((words[first][0], words[-1][1], total))
    return runs


def segments(text: str, count: CountTokens, limit: int) -> list[tuple[int, int, int]]:
    """(start, end, tokens) of the paragraphs, or of their sentences or word runs where a
    paragraph is longer than `limit` tokens, in order."""
    out: list[tuple[int, int, int]] = []
    paragraphs = _spans(_PARAGRAPH, text, 0, len(text))
    for (a, b), n in zip(paragraphs, count([text[a:b] for a, b in paragraphs]), strict=True):
        if n <= limit:
            out.append((a, b, n))
            continue
        sentences = _spans(_SENTENCE, text, a, b)
        for (sa, sb), m in zip(sentences, count([text[x:y] for x, y in sentences]), strict=True):
            out += [(sa, sb, m)] if m <= limit else _word_runs(text, (sa, sb), count, limit)
    return out


def chunk_text(text: str, count: CountTokens, config: ChunkConfig = ChunkConfig()) -> list[Chunk]:
    """The chunks of `text`: whole segments packed up to `config.max_tokens`, each chunk
    after the first starting with the last segments of the one before (≤ `overlap` tokens),
    always moving forward by at least one segment."""
    parts = segments(text, count, config.max_tokens)
    chunks: list[Chunk] = []
    first = 0
    while first < len(parts):
        last, total = first, parts[first][2]
        while last + 1 < len(parts) and total + parts[last + 1][2] <= config.max_tokens:
            last += 1
            total += parts[last][2]
        start, end = parts[first][0], parts[last][1]
        chunks.append(Chunk(text[start:end], start, end, total))
        if last + 1 >= len(parts):
            break
        back, carried = last + 1, 0
        while back - 1 > first and carried + parts[back - 1][2] <= config.overlap:
            back -= 1
            carried += parts[back][2]
        first = back
    return chunks
