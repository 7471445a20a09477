"""WordPiece tokenization as BERT does it: normalize, split into words, greedy subwords.

    text → clean (drop control chars, whitespace → ' ') → space out CJK characters
         → strip accents (NFD, drop nonspacing marks) → lowercase
         → split on whitespace, then cut every punctuation character out as its own word
         → each word: longest vocabulary prefix first, continuations spelled "##piece";
           a word with no segmentation (or over 100 characters) becomes [UNK]

Which normalization steps run is read from the tokenizer's files (`tokenizer.json`'s
BertNormalizer, or `tokenizer_config.json` beside a `vocab.txt`). Model inputs are
`[CLS] A [SEP]` (token type 0) or `[CLS] A [SEP] B [SEP]` (B and its [SEP] type 1).

`WordPieceTokenizer` offers the same methods as the BPE `Tokenizer` (encode, decode,
special_tokens, bos_id/eos_id, save, load), so the rest of parrot can use either.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from pathlib import Path

from parrot.errors import ParrotError
from parrot.tokenizer.fast import special_set, special_splitter
from parrot.tokenizer.wordpiece_io import WordPieceParts, load_wordpiece, save_wordpiece

# CJK Unified Ideographs blocks (and compatibility ideographs) that BERT spaces out;
# Hangul, Hiragana and Katakana are not among them. The sixth range starts at 0x2B920 as
# in the `tokenizers` library (which fast BERT tokenizers run); Google's original code
# and transformers' slow tokenizer start it at 0x2B820.
CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
              (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


# --- normalization and word splitting (pure functions) -----------------------------------
def is_control(c: str) -> bool:
    """Control and format characters BERT deletes (tab, newline, return count as spaces)."""
    return c not in "\t\n\r" and unicodedata.category(c).startswith("C")


def is_whitespace(c: str) -> bool:
    return c in " \t\n\r" or unicodedata.category(c) == "Zs"


def is_cjk(c: str) -> bool:
    cp = ord(c)
    return any(lo <= cp <= hi for lo, hi in CJK_RANGES)


def is_punctuation(c: str) -> bool:
    """ASCII symbols (`$`, `+`, `^`, ... count too) or any Unicode punctuation (category P*)."""
    cp = ord(c)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(c).startswith("P")


def normalize(text: str, parts: WordPieceParts) -> str:
    """Apply the tokenizer's cleaning, CJK spacing, accent stripping and lowercasing."""
    if parts.clean_text:
        text = "".join(" " if is_whitespace(c) else c for c in text
                       if c not in "\x00\ufffd" and not is_control(c))
    if parts.handle_chinese_chars:
        text = "".join(f" {c} " if is_cjk(c) else c for c in text)
    strip = parts.lowercase if parts.strip_accents is None else parts.strip_accents
    if strip:
        text = "".join(c for c in unicodedata.normalize("NFD", text)
                       if unicodedata.category(c) != "Mn")
    if parts.lowercase:
        # Per character, as the reference does (no context-dependent final sigma).
        text = "".join(c.lower() for c in text)
    return text


def split_words(text: str) -> list[str]:
    """Whitespace-separated words with every punctuation character as a word of its own.

    >>> split_words("Hello, world!")
    ['Hello', ',', 'world', '!']
    """
    words: list[str] = []
    for chunk in text.split():
        current = ""
        for c in chunk:
            if is_punctuation(c):
                words += [current, c] if current else [c]
                current = ""
            else:
                current += c
        if current:
            words.append(current)
    return words


def wordpiece(word: str, vocab: dict[str, int], unk_id: int, prefix: str = "##",
              max_chars: int = 100) -> list[int]:
    """Greedy longest-match-first segmentation of one word into vocabulary ids.

    >>> wordpiece("unaffable", {"un": 0, "##aff": 1, "##able": 2}, unk_id=9)
    [0, 1, 2]

    A word that cannot be covered entirely (or is longer than max_chars) is [UNK].
    """
    if len(word) > max_chars:
        return [unk_id]
    ids, start = [], 0
    while start < len(word):
        end = len(word)
        while end > start:
            piece = word[start:end] if start == 0 else prefix + word[start:end]
            if piece in vocab:
                ids.append(vocab[piece])
                break
            end -= 1
        if end == start:
            return [unk_id]
        start = end
    return ids


def truncate_pair(a: list[int], b: list[int] | None, budget: int) -> None:
    """Shorten a (and b) in place to `budget` ids in all, longest first, from the end."""
    while len(a) + len(b or ()) > budget:
        if b and len(b) > len(a):
            b.pop()
        elif a:
            a.pop()
        else:
            break


# --- the tokenizer ----------------------------------------------------------------------
class WordPieceTokenizer:
    """BERT's tokenizer. Build from `WordPieceParts` or with `load` (tokenizer.json / vocab.txt)."""

    def __init__(self, parts: WordPieceParts) -> None:
        self.parts = parts
        self._id_of = {piece: i for i, piece in enumerate(parts.vocab)}
        if parts.unk_token not in self._id_of:
            raise ParrotError(f"The WordPiece vocabulary lacks its unknown token "
                              f"{parts.unk_token!r}.")
        self._unk_id = self._id_of[parts.unk_token]
        self.bos_id = parts.special_tokens.get(parts.cls_token)
        self.eos_id = parts.special_tokens.get(parts.sep_token)
        self.chat_template: str | None = None  # encoders have none; kept for the interface

    @classmethod
    def load(cls, path: str | Path) -> WordPieceTokenizer:
        """A `tokenizer.json` (file or folder) or a folder with `vocab.txt`."""
        return cls(load_wordpiece(Path(path)))

    def save(self, directory: str | Path) -> None:
        """Write `directory/tokenizer.json` in Hugging Face's WordPiece format, atomically."""
        save_wordpiece(self.parts, Path(directory))

    # --- properties ---------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.parts.vocab)

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self.parts.special_tokens)

    @property
    def mask_id(self) -> int | None:
        return self.parts.special_tokens.get("[MASK]")

    @property
    def pad_id(self) -> int | None:
        return self.parts.special_tokens.get("[PAD]")

    # --- encoding -----------------------------------------------------------------------
    def encode(self, text: str, allowed_special: str | set[str] = "none") -> list[int]:
        """Text → piece ids, no [CLS]/[SEP]. Allowed specials ("all", "none" or a set)
        written in the text become their ids; otherwise they are ordinary text."""
        allowed = special_set(allowed_special, self.parts.special_tokens)
        splitter = special_splitter(allowed)
        ids: list[int] = []
        for k, part in enumerate(splitter.split(text) if splitter else [text]):
            # odd parts are the special tokens the splitter matched
            ids += [self.parts.special_tokens[part]] if k % 2 else self._encode_plain(part)
        return ids

    def encode_batch(self, texts: list[str], allowed_special: str | set[str] = "none"
                     ) -> list[list[int]]:
        return [self.encode(t, allowed_special) for t in texts]

    def encode_inputs(self, text: str, pair: str | None = None, max_length: int | None = None,
                      allowed_special: str | set[str] = "none") -> tuple[list[int], list[int]]:
        """(ids, token_types) of `[CLS] text [SEP]` or `[CLS] text [SEP] pair [SEP]`.

        max_length counts the special tokens; the longer text loses its last pieces first
        (Hugging Face's "longest_first" truncation).
        """
        cls_id, sep_id = self.bos_id, self.eos_id
        if cls_id is None or sep_id is None:
            raise ParrotError("This tokenizer has no [CLS]/[SEP] tokens to frame model inputs.")
        a = self.encode(text, allowed_special)
        b = None if pair is None else self.encode(pair, allowed_special)
        if max_length is not None:
            truncate_pair(a, b, max(0, max_length - (2 if b is None else 3)))
        ids = [cls_id, *a, sep_id]
        types = [0] * len(ids)
        if b is not None:
            ids += [*b, sep_id]
            types += [1] * (len(b) + 1)
        return ids, types

    def tokenize(self, text: str) -> list[str]:
        """The pieces of `text` as strings (for display)."""
        return [self.parts.vocab[i] for i in self.encode(text)]

    # --- decoding -----------------------------------------------------------------------
    def decode(self, ids: Sequence[int]) -> str:
        """Pieces joined by spaces with "##" continuations glued on, punctuation cleaned up."""
        pieces = [self._piece(i) for i in ids]
        text = " ".join(pieces).replace(f" {self.parts.prefix}", "")
        for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","),
                              (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"),
                              (" 've", "'ve"), (" 're", "'re")):
            text = text.replace(before, after)
        return text

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        return self.decode(ids).encode("utf-8")

    def token_bytes(self, id: int) -> bytes:
        return self._piece(id).encode("utf-8")

    # --- internals ----------------------------------------------------------------------
    def _encode_plain(self, text: str) -> list[int]:
        p = self.parts
        ids: list[int] = []
        for word in split_words(normalize(text, p)):
            ids += wordpiece(word, self._id_of, self._unk_id, p.prefix, p.max_word_chars)
        return ids

    def _piece(self, i: int) -> str:
        if not isinstance(i, int) or not 0 <= i < len(self.parts.vocab):
            raise ParrotError(f"token id {i!r} is outside the vocabulary "
                              f"(0..{len(self.parts.vocab) - 1}).")
        return self.parts.vocab[i]

    def __repr__(self) -> str:
        return (f"WordPieceTokenizer(vocab_size={self.vocab_size}, "
                f"lowercase={self.parts.lowercase})")
