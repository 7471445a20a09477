"""The `Tokenizer`: byte-level BPE with named special tokens, saved as `tokenizer.json`.

Text → ids: special tokens that are allowed become their ids; the rest is cut into
chunks by the split pattern, each chunk's UTF-8 bytes start as one token per byte, and the
learned merges are replayed (see `bpe.py`). Ids → text: concatenate the tokens' bytes and
decode UTF-8, replacing invalid sequences with U+FFFD.

Special tokens follow tiktoken: text that contains one raises `SpecialTokenError` unless it
is allowed (`allowed_special`) or explicitly treated as plain text (`disallowed_special`).
Merges never produce a special token, because specials are not part of the byte vocabulary.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from parrot.errors import ParrotError
from parrot.tokenizer.bpe import count_chunks, merge_ranks, train_merges
from parrot.tokenizer.fast import (
    BPETables,
    CachedEncoder,
    ReferenceEncoder,
    TiktokenEncoder,
    special_set,
    special_splitter,
    tiktoken_compatible,
)
from parrot.tokenizer.io import TokenizerParts, read_tokenizer_json, write_tokenizer_json
from parrot.tokenizer.pretokenize import resolve_pattern
from parrot.tokenizer.spm import SentencePieceEncoder, SentencePieceParts
from parrot.tokenizer.spm_json import write_spm_json
from parrot.utils.atomic import atomic_write_json

# Conventional names of begin/end-of-text tokens, most common first.
BOS_NAMES = ("<|begin_of_text|>", "<|startoftext|>", "<s>", "<bos>", "[CLS]")
EOS_NAMES = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>", "[SEP]")

Special = str | set[str] | frozenset[str]


class SpecialTokenError(ParrotError, ValueError):
    """Text contained a special token that the caller did not allow."""


class Tokenizer:
    """A byte-level BPE tokenizer. Build with `train`, `load` or from `TokenizerParts`.

    Built from `SentencePieceParts` instead, it is a SentencePiece-style tokenizer (Gemma):
    same methods, its own encoder (`spm.py`)."""

    def __init__(self, parts: TokenizerParts | SentencePieceParts) -> None:
        self.parts = parts
        self._tables = _build_tables(parts) if isinstance(parts, TokenizerParts) else None
        self._fast: ReferenceEncoder | TiktokenEncoder | SentencePieceEncoder | None = None
        self.bos_id = first_special(BOS_NAMES, parts.special_tokens)
        self.eos_id = first_special(EOS_NAMES, parts.special_tokens)
        # The model's own Jinja chat template travels with its tokenizer (set by loaders).
        self.chat_template: str | None = None

    # --- building -----------------------------------------------------------------------
    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        pattern: str = "gpt2",
        special_tokens: Sequence[str] = (),
        on_merge: Callable[[int, int], None] | None = None,
    ) -> Tokenizer:
        """Learn `vocab_size - 256 - len(special_tokens)` merges from `texts`.

        `pattern` is a name from `PATTERNS` or a regex. `on_merge(done, total)` reports
        progress. Fewer merges are learned if the text runs out of pairs.
        """
        specials = list(dict.fromkeys(special_tokens))
        check_vocab_size(vocab_size, specials)
        regex = resolve_pattern(pattern)
        num_merges = vocab_size - 256 - len(specials)
        report = (lambda k: on_merge(k, num_merges)) if on_merge else None
        merges = train_merges(count_chunks(texts, regex), num_merges, report)
        token_bytes = [bytes([i]) for i in range(256)]
        for a, b in merges:
            token_bytes.append(token_bytes[a] + token_bytes[b])
        special_ids = {s: len(token_bytes) + k for k, s in enumerate(specials)}
        token_bytes += [s.encode("utf-8") for s in specials]
        return cls(TokenizerParts(token_bytes, merges, regex, special_ids))

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Read a `tokenizer.json` file, or the one inside a directory."""
        path = Path(path)
        file = path / "tokenizer.json" if path.is_dir() else path
        if not file.is_file():
            raise ParrotError(f"No tokenizer found at {path}; give a tokenizer.json or its folder.")
        tokenizer = cls(read_tokenizer_json(file))
        tokenizer._read_bos_eos(file.parent / "tokenizer_config.json")
        return tokenizer

    def save(self, directory: str | Path) -> None:
        """Write `directory/tokenizer.json` (Hugging Face format) atomically."""
        path, parts = Path(directory) / "tokenizer.json", self.parts
        if isinstance(parts, SentencePieceParts):  # Gemma: 500k merges, so no indentation
            atomic_write_json(path, write_spm_json(parts), indent=None)
        else:
            atomic_write_json(path, write_tokenizer_json(parts))

    # --- properties ---------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.parts.token_bytes)

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self.parts.special_tokens)

    @property
    def pattern(self) -> str:
        return self.parts.pattern

    @property
    def fast_path(self) -> str:
        """Which fast encoder runs: "tiktoken", or "cached-python" for foreign vocabularies."""
        return "tiktoken" if isinstance(self._encoder(), TiktokenEncoder) else "cached-python"

    # --- encoding -----------------------------------------------------------------------
    def encode(
        self, text: str, allowed_special: Special = "none", disallowed_special: Special = "all"
    ) -> list[int]:
        """Text → ids. Specials in `allowed_special` ("all", "none" or a set) become their ids;
        one in `disallowed_special` raises SpecialTokenError; any other is plain text."""
        allowed = self._allowed(text, allowed_special, disallowed_special)
        return self._encoder().encode(text, allowed)

    def encode_batch(
        self,
        texts: list[str],
        allowed_special: Special = "none",
        disallowed_special: Special = "all",
    ) -> list[list[int]]:
        """`encode` for many texts (in parallel threads on the tiktoken path)."""
        allowed = frozenset().union(
            *(self._allowed(t, allowed_special, disallowed_special) for t in texts)
        )
        return self._encoder().encode_batch(texts, allowed)

    def encode_reference(self, text: str, allowed_special: Special = "none") -> list[int]:
        """`encode` through the readable pure-Python algorithm (slow; for tests and study)."""
        allowed = self._allowed(text, allowed_special, "all")
        if isinstance(self.parts, SentencePieceParts):  # one algorithm, minus the memo
            return SentencePieceEncoder(self.parts, max_entries=0).encode(text, allowed)
        return ReferenceEncoder(self._tables).encode(text, allowed)

    # --- decoding -----------------------------------------------------------------------
    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        table = self.parts.token_bytes
        try:
            return b"".join([table[i] for i in ids])
        except (IndexError, TypeError):
            bad = next(i for i in ids if not isinstance(i, int) or not 0 <= i < len(table))
            raise ParrotError(
                f"token id {bad!r} is outside the vocabulary (0..{len(table) - 1})."
            ) from None

    def decode(self, ids: Sequence[int]) -> str:
        """Ids → text; byte sequences that are not valid UTF-8 become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def token_bytes(self, id: int) -> bytes:
        return self.decode_bytes([id])

    # --- internals ----------------------------------------------------------------------
    def _read_bos_eos(self, config_path: Path) -> None:
        """Take BOS/EOS from a Hugging Face `tokenizer_config.json` beside the file, if any."""
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        for key, attr in (("bos_token", "bos_id"), ("eos_token", "eos_id")):
            name = config.get(key) if isinstance(config, dict) else None
            name = name.get("content") if isinstance(name, dict) else name
            if name in self.parts.special_tokens:
                setattr(self, attr, self.parts.special_tokens[name])

    def _encoder(self) -> ReferenceEncoder | TiktokenEncoder | SentencePieceEncoder:
        if self._fast is None and isinstance(self.parts, SentencePieceParts):
            self._fast = SentencePieceEncoder(self.parts)
        if self._fast is None:
            self._fast = CachedEncoder(self._tables)
            if tiktoken_compatible(self._tables, self.parts.token_bytes):
                try:
                    self._fast = TiktokenEncoder(self._tables, self.parts.token_bytes)
                except ValueError:  # a custom split regex that tiktoken's engine rejects
                    pass
        return self._fast

    def _allowed(self, text: str, allowed: Special, disallowed: Special) -> frozenset[str]:
        names = self.parts.special_tokens
        allowed_set = special_set(allowed, names)
        disallowed_set = (
            frozenset(names) - allowed_set if disallowed == "all" else special_set(disallowed, names)
        )
        splitter = special_splitter(disallowed_set)
        found = splitter.search(text) if splitter else None
        if found:
            raise SpecialTokenError(
                f"the text contains the special token {found.group()!r}; pass it in "
                "allowed_special to encode it as a special token, or disallowed_special=() "
                "to encode it as plain text."
            )
        return allowed_set

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, specials={list(self.special_tokens)})"


def check_vocab_size(vocab_size: int, special_tokens: Sequence[str]) -> None:
    """ParrotError unless the vocabulary fits the 256 bytes plus the distinct specials."""
    needed = 256 + len(set(special_tokens))
    if vocab_size < needed:
        raise ParrotError(
            f"vocab size {vocab_size} is too small: it must be at least 256 (the bytes) "
            f"plus {needed - 256} special tokens = {needed}."
        )


def first_special(candidates: Sequence[str], specials: dict[str, int]) -> int | None:
    """The id of the first of `candidates` that is one of `specials`, else None."""
    return next((specials[name] for name in candidates if name in specials), None)


def _build_tables(parts: TokenizerParts) -> BPETables:
    """Byte → id and pair → (rank, merged id) tables; ParrotError if the parts disagree."""
    specials = set(parts.special_tokens.values())
    id_of = {b: i for i, b in enumerate(parts.token_bytes) if i not in specials}
    byte_ids = tuple(id_of.get(bytes([b]), -1) for b in range(256))
    ranks = merge_ranks(parts.merges, parts.token_bytes, id_of)
    whole = id_of if parts.ignore_merges else {}
    return BPETables(parts.pattern, byte_ids, ranks, dict(parts.special_tokens), whole)
