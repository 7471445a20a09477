"""SentencePiece-style tokenizers in Hugging Face's `tokenizer.json` form, both ways.

Hugging Face stores them (Gemma, Llama 2) as a BPE model with `byte_fallback` and a
normalizer that writes spaces as "▁" (preceded by a "▁" when the tokenizer adds a dummy
prefix). Merges are listed in rank order, so a file read here fuses by rank; a vocabulary
that fuses by score (from a GGUF file) is written with merges derived from the scores
(`merges_from_scores`). Added tokens: `special: true` ones are parrot's special tokens,
the others are user-defined pieces matched wherever they occur.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from parrot.errors import ParrotError
from parrot.tokenizer.hf_json import added_token, added_tokens, by_id, read_merge, text_field
from parrot.tokenizer.spm import SPACE_PIECE, SentencePieceParts, normalize

_REPLACE_SPACE = {"type": "Replace", "pattern": {"String": " "}, "content": SPACE_PIECE}
_PREPEND_SPACE = {"type": "Prepend", "prepend": SPACE_PIECE}
_DECODER = {"type": "Sequence", "decoders": [
    {"type": "Replace", "pattern": {"String": SPACE_PIECE}, "content": " "},
    {"type": "ByteFallback"},
    {"type": "Fuse"},
]}


def is_spm_json(data: dict[str, Any]) -> bool:
    """True for a BPE `tokenizer.json` of the SentencePiece kind (byte fallback or "▁")."""
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict):
        return False
    return bool(model.get("byte_fallback")) or SPACE_PIECE in str(data.get("normalizer"))


def read_spm_json(data: dict[str, Any], where: str) -> SentencePieceParts:
    """`SentencePieceParts` (rank rule) from a parsed `tokenizer.json`; ParrotError when the
    file uses a feature this reader does not reproduce exactly."""
    model = data["model"]
    _check_supported(data, model, where)
    add_prefix = _read_normalizer(data.get("normalizer"), where)
    added = added_tokens(data, where)
    size = 1 + max([*model["vocab"].values(), *(int(t["id"]) for t in added)])
    pieces = by_id([*model["vocab"].items(), *((t["content"], int(t["id"])) for t in added)],
                   size, where)
    specials, user_defined, normalized_user = {}, {}, {}
    for token in added:
        text, i = token["content"], int(token["id"])
        if token.get("special"):
            specials[text] = i
        elif token.get("normalized", True):  # matched after normalization, like its content
            normalized_user[normalize(text, add_prefix)] = i
        else:
            user_defined[text] = i
    id_of = {p: i for i, p in enumerate(pieces)}
    merges = [read_merge(m, id_of, where) for m in model["merges"]]
    unk = model.get("unk_token")
    if unk is not None:
        text_field(unk, where, "unk_token")
    return SentencePieceParts(
        pieces, [0.0] * size, specials, user_defined, merges,
        add_dummy_prefix=add_prefix, unk_id=id_of.get(unk) if unk else None,
        ignore_merges=bool(model.get("ignore_merges", False)), normalized_user=normalized_user)


def write_spm_json(parts: SentencePieceParts) -> dict[str, Any]:
    """The Hugging Face `tokenizer.json` structure for `parts`."""
    merges = parts.merges if parts.merges is not None else merges_from_scores(parts.pieces,
                                                                             parts.scores)
    whole = [(i, text, True, False) for text, i in parts.special_tokens.items()]
    whole += [(i, text, False, False) for text, i in parts.user_defined.items()]
    whole += [(i, parts.pieces[i], False, True) for i in parts.normalized_user.values()]
    added = [added_token(i, text, special, normalized)
             for i, text, special, normalized in sorted(whole)]
    normalizer: dict[str, Any] = _REPLACE_SPACE
    if parts.add_dummy_prefix:
        normalizer = {"type": "Sequence", "normalizers": [_PREPEND_SPACE, _REPLACE_SPACE]}
    unk = parts.pieces[parts.unk_id] if parts.unk_id is not None else None
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": normalizer, "pre_tokenizer": None, "post_processor": None,
        "decoder": _DECODER,
        "model": {
            "type": "BPE", "dropout": None, "unk_token": unk, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True,
            "ignore_merges": parts.ignore_merges,
            "vocab": {p: i for i, p in enumerate(parts.pieces)},
            "merges": [[parts.pieces[a], parts.pieces[b]] for a, b in merges],
        },
    }


def _check_supported(data: dict[str, Any], model: dict[str, Any], where: str) -> None:
    if not model.get("byte_fallback"):
        raise ParrotError(f"{where} writes spaces as '▁' without byte fallback; parrot reads "
                          "only SentencePiece-style BPE with byte fallback.")
    if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix") or \
            model.get("dropout"):
        raise ParrotError(f"{where} uses subword prefixes, suffixes or dropout; this is not "
                          "supported yet.")
    if data.get("pre_tokenizer") is not None:
        kind = data["pre_tokenizer"].get("type")
        raise ParrotError(f"{where} has a {kind} pre-tokenizer; parrot reads SentencePiece-style "
                          "files only with the '▁' normalizer and no pre-tokenizer.")
    for token in data.get("added_tokens") or []:
        text = token["content"]
        if token.get("lstrip") or token.get("rstrip") or token.get("single_word"):
            raise ParrotError(f"{where} has the added token {text!r} with lstrip, rstrip or "
                              "single_word set; parrot does not support those yet.")
        if token.get("special") and token.get("normalized") and (" " in text or
                                                                 SPACE_PIECE in text):
            raise ParrotError(f"{where} has the special token {text!r}, matched after "
                              "normalization; parrot does not support that yet.")


def _read_normalizer(normalizer: dict[str, Any] | None, where: str) -> bool:
    """Whether the normalizer adds a dummy prefix; ParrotError unless it is Replace(" ",
    "▁"), alone or with Prepend("▁")."""
    steps = normalizer.get("normalizers", []) if normalizer and \
        normalizer.get("type") == "Sequence" else [normalizer]
    steps = [s for s in steps if s is not None]
    if steps == [_REPLACE_SPACE]:
        return False
    if len(steps) == 2 and _PREPEND_SPACE in steps and _REPLACE_SPACE in steps:
        return True
    kinds = [s.get("type") for s in steps]
    raise ParrotError(f"{where} has a normalizer ({kinds}) that parrot does not support; "
                      "expected Replace(' ', '▁'), optionally with Prepend('▁').")


def merges_from_scores(pieces: Sequence[str], scores: Sequence[float]) -> list[tuple[int, int]]:
    """Rank-ordered merges that replay the score rule: every split of every piece into two
    pieces, the fused piece's score best first (then by piece id, then split point).

    This is how a scored vocabulary is written as a Hugging Face BPE file; the two rules
    agree except on ties between different pairs whose fused pieces score the same.

    >>> merges_from_scores(["a", "b", "ab", "ba"], [0.0, 0.0, -2.0, -1.0])
    [(1, 0), (0, 1)]
    """
    piece_id = {p: i for i, p in enumerate(pieces)}
    merges = []
    for i in sorted(range(len(pieces)), key=lambda i: -scores[i]):  # stable: ids in order
        piece = pieces[i]
        for k in range(1, len(piece)):
            left = piece_id.get(piece[:k])
            right = piece_id.get(piece[k:]) if left is not None else None
            if right is not None:
                merges.append((left, right))
    return merges
