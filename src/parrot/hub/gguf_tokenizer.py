"""The tokenizer stored in a GGUF file's metadata, as a parrot `Tokenizer`.

Keys read: `tokenizer.ggml.model`, `.tokens`, `.token_type` (1 normal, 2 unknown,
3 control, 4 user-defined, 5 unused, 6 byte), the BOS/EOS/padding ids, `.add_bos_token` and
`tokenizer.chat_template`; then per kind of model:

- "gpt2", byte-level BPE (SmolLM2): tokens in GPT-2's printable byte form, `.merges`
  ("left right" strings in rank order) and `.pre` (the split rule llama.cpp applies first).
  Control and user-defined tokens become special tokens: matched as whole strings only
  when the caller allows specials, never produced by merges.
- "llama", SentencePiece-style BPE (Gemma 3, see `tokenizer/spm.py`): `.scores` choose the
  fusions, `.add_space_prefix` the dummy prefix (llama.cpp's default: on). Control and
  unknown tokens become special tokens; user-defined ones (Gemma: runs of newlines, spaces
  and tabs, HTML tags) are matched wherever they occur, before fusing, as llama.cpp does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from parrot.errors import ParrotError
from parrot.tokenizer import PATTERNS, SentencePieceParts, Tokenizer, TokenizerParts
from parrot.tokenizer.hf_json import read_merge
from parrot.tokenizer.io import str_to_bytes

TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6

# GPT-2's split with every digit on its own: llama.cpp's "smollm" rule first cuts each
# digit out, then applies GPT-2's regex to the text between. In one regex, a digit is a
# chunk by itself, and a whitespace run may end right before a digit (where the cut was).
DIGIT_SPLIT_GPT2 = (
    r"""\p{N}|'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?[^\s\p{L}\p{N}]+|\s+(?![^\s\p{N}])|\s+"""
)

# `tokenizer.ggml.pre` → the split regex that reproduces llama.cpp's pre-tokenizer.
PRE_PATTERNS: dict[str, str] = {
    "gpt2": PATTERNS["gpt2"],
    "smollm": DIGIT_SPLIT_GPT2,
    "llama-bpe": PATTERNS["llama3"],
    "llama3": PATTERNS["llama3"],
}


# Like llama.cpp, control tokens with these texts also end generation (end of turn, and
# the fill-in-the-middle "repository" marker that starts a new file).
END_OF_GENERATION = ("<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<end_of_turn>", "</s>",
                     "<|end_of_text|>", "<eos>", "<|fim_pad|>", "<|repo_name|>", "<reponame>",
                     "<|file_sep|>")


@dataclass(frozen=True)
class GGUFTokenizerInfo:
    """What besides the vocabulary a GGUF file says about its tokenizer."""

    bos_id: int | None
    eos_ids: tuple[int, ...]  # the declared EOS first, then other end-of-generation tokens
    pad_id: int | None
    add_bos: bool
    chat_template: str | None


def tokenizer_from_gguf(metadata: dict[str, Any], where: str = "GGUF file"
                        ) -> tuple[Tokenizer, GGUFTokenizerInfo]:
    """Build the tokenizer and its extra information from GGUF metadata."""
    kind = metadata.get("tokenizer.ggml.model")
    if "tokenizer.ggml.tokens" not in metadata:
        raise ParrotError(f"{where} has no tokenizer.ggml.tokens in its metadata.")
    parts: TokenizerParts | SentencePieceParts
    if kind == "llama":
        parts = sentencepiece_parts(metadata, where)
    elif kind == "gpt2":
        pre = str(metadata.get("tokenizer.ggml.pre", "default"))
        if pre not in PRE_PATTERNS:
            raise ParrotError(f"{where} uses the pre-tokenizer {pre!r}, which parrot does not "
                              f"know (known: {', '.join(PRE_PATTERNS)}).")
        parts = tokenizer_parts(metadata, PRE_PATTERNS[pre], where)
    else:
        raise ParrotError(f"{where} has a {kind!r} tokenizer; parrot reads byte-level BPE "
                          "('gpt2') and SentencePiece-style ('llama') GGUF tokenizers.")
    info = _info(metadata, parts)
    tokenizer = Tokenizer(parts)
    tokenizer.bos_id = info.bos_id
    tokenizer.eos_id = info.eos_ids[0] if info.eos_ids else None
    return tokenizer, info


def tokenizer_parts(metadata: dict[str, Any], pattern: str, where: str) -> TokenizerParts:
    """Vocabulary, merges and special tokens from the metadata."""
    tokens = list(metadata["tokenizer.ggml.tokens"])
    merges_text = list(metadata.get("tokenizer.ggml.merges", []))
    types = list(metadata.get("tokenizer.ggml.token_type", [TOKEN_NORMAL] * len(tokens)))
    specials = {tok: i for i, (tok, kind) in enumerate(zip(tokens, types, strict=True))
                if kind in (TOKEN_CONTROL, TOKEN_USER)}
    token_bytes = [tok.encode("utf-8") if tok in specials and specials[tok] == i
                   else str_to_bytes(tok, where) for i, tok in enumerate(tokens)]
    id_of = {tok: i for i, tok in enumerate(tokens) if tok not in specials}
    merges = [read_merge(text, id_of, where) for text in merges_text]
    return TokenizerParts(token_bytes, merges, pattern, specials)


def sentencepiece_parts(metadata: dict[str, Any], where: str) -> SentencePieceParts:
    """Pieces, scores and whole-matched tokens of a "llama" (SentencePiece) vocabulary.

    Like llama.cpp: an empty token is renamed "[EMPTY_<id>]", and a user-defined token whose
    text ends generation (Gemma's "</s>") counts as a control token.
    """
    tokens = [tok or f"[EMPTY_{i}]" for i, tok in enumerate(metadata["tokenizer.ggml.tokens"])]
    n = len(tokens)
    scores = [float(s) for s in metadata.get("tokenizer.ggml.scores", [0.0] * n)]
    types = list(metadata.get("tokenizer.ggml.token_type", [TOKEN_NORMAL] * n))
    if len(scores) != n or len(types) != n:
        raise ParrotError(f"{where} lists {n} tokens but {len(scores)} scores and "
                          f"{len(types)} token types; the file is corrupt.")
    specials, user_defined = {}, {}
    for i, (tok, kind) in enumerate(zip(tokens, types, strict=True)):
        if kind in (TOKEN_CONTROL, TOKEN_UNKNOWN) or (kind == TOKEN_USER
                                                      and tok in END_OF_GENERATION):
            specials[tok] = i
        elif kind == TOKEN_USER:
            user_defined[tok] = i
    unk = metadata.get("tokenizer.ggml.unknown_token_id")
    unk = int(unk) if unk is not None and 0 <= int(unk) < n else None  # llama.cpp: ignored
    return SentencePieceParts(
        tokens, scores, specials, user_defined, merges=None,
        add_dummy_prefix=bool(metadata.get("tokenizer.ggml.add_space_prefix", True)),
        unk_id=unk)


def _info(metadata: dict[str, Any], parts: TokenizerParts | SentencePieceParts
          ) -> GGUFTokenizerInfo:
    def token_id(key: str) -> int | None:
        value = metadata.get(f"tokenizer.ggml.{key}_token_id")
        return int(value) if value is not None else None

    ends = [i for name, i in parts.special_tokens.items() if name in END_OF_GENERATION]
    eos_ids = tuple(dict.fromkeys(i for i in (token_id("eos"), token_id("eot"), *sorted(ends))
                                  if i is not None))
    add_bos = bool(metadata.get("tokenizer.ggml.add_bos_token", False))
    template = metadata.get("tokenizer.chat_template")
    return GGUFTokenizerInfo(token_id("bos"), eos_ids, token_id("padding"), add_bos,
                             str(template) if template else None)
