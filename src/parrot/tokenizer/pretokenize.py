"""Pre-tokenization: cut text into chunks that BPE merges never cross.

A chunk is a word with its leading space, a run of digits, a run of punctuation or a
run of whitespace. Merges happen only inside a chunk, so a token never spans " the" and
the following "." and the vocabulary is not wasted on accidental neighbours.
"""

from __future__ import annotations

from functools import lru_cache

import regex

from parrot.errors import ParrotError

# The named split patterns. Each is also valid in the `tokenizers` (Oniguruma) and
# `tiktoken` (fancy-regex) engines, so all three split text the same way.
PATTERNS: dict[str, str] = {
    # GPT-2: contractions, letters, digits, punctuation, each with one optional leading space.
    "gpt2": (
        r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    ),
    # cl100k (GPT-4): case-insensitive contractions, numbers in groups of at most three,
    # newlines kept apart from other whitespace.
    "cl100k": (
        r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
        r"""|\s*[\r\n]|\s+(?!\S)|\s+"""
    ),
    # Llama 3: cl100k's rules with plain (non-possessive) quantifiers.
    "llama3": (
        r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"""
        r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
    ),
}


def resolve_pattern(pattern: str) -> str:
    """A pattern name ("gpt2", "cl100k", "llama3") → its regex; any other string is a regex.

    Raises ParrotError when the string is neither a known name nor a valid regex.
    """
    if pattern in PATTERNS:
        return PATTERNS[pattern]
    try:
        compile_pattern(pattern)
    except regex.error:
        names = ", ".join(PATTERNS)
        raise ParrotError(
            f"The split pattern {pattern!r} is not a known name ({names}) nor a valid regex."
        ) from None
    return pattern


@lru_cache(maxsize=32)
def compile_pattern(pattern: str) -> regex.Pattern:
    return regex.compile(pattern)


def pretokenize(text: str, pattern: str) -> list[str]:
    """Split `text` into the chunks that `pattern` matches (the named patterns match every character).

    >>> pretokenize("Hello world!!  ok", PATTERNS["gpt2"])
    ['Hello', ' world', '!!', ' ', ' ok']
    """
    return compile_pattern(pattern).findall(text)
