"""Reading and writing Hugging Face `tokenizer.json` files.

A byte-level BPE `tokenizer.json` stores each token as a printable string: GPT-2's table
maps every byte to one visible character (bytes that print as themselves keep their
character, the rest move to code points 256 and up). Merges are pairs of such strings.

`read_tokenizer_json` reads BPE models, byte-level or SentencePiece-style (`spm_json.py`);
WordPiece files belong to their own class (`wordpiece_io.py`), and other containers (GGUF
vocabularies) build a `TokenizerParts` directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from parrot.errors import ParrotError
from parrot.tokenizer.hf_json import (
    MALFORMED,
    added_token,
    added_tokens,
    by_id,
    read_json_file,
    read_merge,
)
from parrot.tokenizer.pretokenize import PATTERNS
from parrot.tokenizer.spm_json import is_spm_json, read_spm_json


@dataclass(frozen=True)
class TokenizerParts:
    """Everything a byte-level BPE tokenizer is made of, independent of the file format."""

    token_bytes: list[bytes]  # id → bytes (special tokens: their UTF-8)
    merges: list[tuple[int, int]]  # learned pairs in rank order
    pattern: str  # the pre-tokenization regex
    special_tokens: dict[str, int] = field(default_factory=dict)
    ignore_merges: bool = False  # a chunk that is itself a token is kept whole


@lru_cache(maxsize=1)
def byte_to_char() -> tuple[str, ...]:
    """GPT-2's printable stand-in character for each byte value 0..255."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]  # in order, from 256 up
    chars = {b: chr(b) for b in printable} | {b: chr(256 + k) for k, b in enumerate(others)}
    return tuple(chars[b] for b in range(256))


@lru_cache(maxsize=1)
def char_to_byte() -> dict[str, int]:
    return {c: b for b, c in enumerate(byte_to_char())}


def bytes_to_str(token: bytes) -> str:
    table = byte_to_char()
    return "".join(table[b] for b in token)


def str_to_bytes(token: str, where: str) -> bytes:
    table = char_to_byte()
    try:
        return bytes(table[c] for c in token)
    except KeyError:
        raise ParrotError(
            f"{where} has token {token!r}, which is not in byte-level form; "
            "only byte-level BPE tokenizers are supported."
        ) from None


def write_tokenizer_json(parts: TokenizerParts) -> dict[str, Any]:
    """The Hugging Face `tokenizer.json` structure for `parts`."""
    special_ids = set(parts.special_tokens.values())
    vocab = {bytes_to_str(b): i for i, b in enumerate(parts.token_bytes) if i not in special_ids}
    as_str = [bytes_to_str(b) for b in parts.token_bytes]
    added = [added_token(i, s) for s, i in sorted(parts.special_tokens.items(),
                                                   key=lambda item: item[1])]
    split = {"type": "Split", "pattern": {"Regex": parts.pattern}, "behavior": "Isolated",
             "invert": False}
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                  "use_regex": False}
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [split, byte_level]},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
            "ignore_merges": parts.ignore_merges, "vocab": vocab,
            "merges": [[as_str[a], as_str[b]] for a, b in parts.merges],
        },
    }


def read_tokenizer_json(path: Path) -> TokenizerParts:
    """Parse a `tokenizer.json`; ParrotError when it is corrupt or of an unsupported kind."""
    data = read_json_file(path)
    model = data.get("model") if isinstance(data, dict) else None
    kind = model.get("type", "BPE" if "merges" in model else None) if isinstance(model, dict) else None
    if kind == "WordPiece":  # not byte-level BPE: it has its own class (`wordpiece.py`)
        raise ParrotError(f"{path} holds a WordPiece tokenizer model; this class reads only "
                          "byte-level BPE, so load it with parrot.tokenizer.load_tokenizer.")
    if kind != "BPE":
        raise ParrotError(
            f"{path} holds a {kind or 'unknown'} tokenizer model; parrot supports only "
            "byte-level BPE for now."
        )
    try:
        return _read_bpe(data, str(path))
    except MALFORMED as err:
        raise ParrotError(f"{path} is a corrupt tokenizer.json ({type(err).__name__}: "
                          f"{str(err)[:160]}).") from None


def _read_bpe(data: dict[str, Any], where: str) -> TokenizerParts:
    if is_spm_json(data):  # SentencePiece-style (Gemma): "▁" for spaces, byte fallback
        return read_spm_json(data, where)  # type: ignore[return-value]
    model = data["model"]
    if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        raise ParrotError(f"{where} uses subword prefixes or suffixes; this is not supported yet.")
    if data.get("normalizer") is not None:
        raise ParrotError(f"{where} has a text normalizer; this is not supported yet.")
    pattern = _read_pattern(data.get("pre_tokenizer"), where)
    specials = {t["content"]: int(t["id"]) for t in added_tokens(data, where)}
    size = 1 + max([*model["vocab"].values(), *specials.values()])
    special_ids = set(specials.values())
    entries = [(str_to_bytes(token, where), i) for token, i in model["vocab"].items()
               if i not in special_ids]  # a special's text need not be in byte-level form
    entries += [(token.encode("utf-8"), i) for token, i in specials.items()]
    token_bytes = by_id(entries, size, where)
    merges = [read_merge(m, model["vocab"], where) for m in model["merges"]]
    return TokenizerParts(token_bytes, merges, pattern, specials,
                          bool(model.get("ignore_merges", False)))


def _read_pattern(pre: dict[str, Any] | None, where: str) -> str:
    """The split regex of the supported pre-tokenizers: ByteLevel(use_regex) alone, or
    Split(regex, Isolated) followed by ByteLevel without its own regex."""
    steps = pre.get("pretokenizers", []) if pre and pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") if s else None for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        if not steps[0].get("add_prefix_space"):
            return PATTERNS["gpt2"]
    if kinds == ["Split", "ByteLevel"]:
        split, level = steps
        regex = split.get("pattern", {}).get("Regex")
        if regex and split.get("behavior") == "Isolated" and not split.get("invert") and not (
            level.get("use_regex") or level.get("add_prefix_space")
        ):
            return regex
    raise ParrotError(f"{where} uses a pre-tokenizer ({kinds}) that parrot does not support yet.")

