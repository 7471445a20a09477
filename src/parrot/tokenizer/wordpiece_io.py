"""WordPiece tokenizers on disk: Hugging Face `tokenizer.json`, or `vocab.txt` plus
`tokenizer_config.json` (the older BERT layout, where `do_lower_case` lives)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parrot.errors import ParrotError
from parrot.tokenizer.hf_json import (
    MALFORMED,
    added_token,
    added_tokens,
    by_id,
    read_json_file,
    text_field,
)
from parrot.utils.atomic import atomic_write_json


@dataclass(frozen=True)
class WordPieceParts:
    """A WordPiece vocabulary (id → piece) and the normalization switches that go with it."""

    vocab: list[str]
    special_tokens: dict[str, int] = field(default_factory=dict)
    unk_token: str = "[UNK]"
    prefix: str = "##"
    max_word_chars: int = 100
    lowercase: bool = True
    strip_accents: bool | None = None  # None: follow `lowercase`, as BERT does
    handle_chinese_chars: bool = True
    clean_text: bool = True
    cls_token: str = "[CLS]"
    sep_token: str = "[SEP]"


def read_wordpiece_json(data: dict[str, Any], where: str) -> WordPieceParts:
    """A parsed `tokenizer.json` whose model is WordPiece → `WordPieceParts`."""
    model = data["model"]
    vocab = by_id(model["vocab"].items(), len(model["vocab"]), where)
    specials = {t["content"]: int(t["id"]) for t in added_tokens(data, where)
                if t.get("special", True)}
    norm = data.get("normalizer") or {}
    if norm and norm.get("type") != "BertNormalizer":
        raise ParrotError(f"{where} has a {norm.get('type')!r} normalizer; parrot's WordPiece "
                          "reader supports BERT's normalizer only.")
    pre = (data.get("pre_tokenizer") or {}).get("type")
    if pre not in (None, "BertPreTokenizer"):
        raise ParrotError(f"{where} uses the {pre!r} pre-tokenizer; parrot's WordPiece reader "
                          "supports BERT's only.")
    return WordPieceParts(
        vocab=vocab, special_tokens=specials,
        unk_token=text_field(model.get("unk_token", "[UNK]"), where, "unk_token"),
        prefix=text_field(model.get("continuing_subword_prefix", "##"), where,
                          "continuing_subword_prefix"),
        max_word_chars=int(model.get("max_input_chars_per_word", 100)),
        lowercase=bool(norm.get("lowercase", False)),
        strip_accents=norm.get("strip_accents"),
        handle_chinese_chars=bool(norm.get("handle_chinese_chars", False)),
        clean_text=bool(norm.get("clean_text", False)),
        **{k: text_field(v, where, k)
           for k, v in _frame_tokens(data.get("post_processor"), specials).items()},
    )


def _frame_tokens(post: dict[str, Any] | None, specials: dict[str, int]) -> dict[str, str]:
    """The [CLS]/[SEP] names the post-processor puts around a single text."""
    if not post:
        return {}
    if post.get("type") == "BertProcessing":
        return {"cls_token": post["cls"][0], "sep_token": post["sep"][0]}
    single = [step["SpecialToken"]["id"] for step in post.get("single", [])
              if "SpecialToken" in step]
    if post.get("type") == "TemplateProcessing" and len(single) == 2:
        return {"cls_token": single[0], "sep_token": single[1]}
    return {}


def read_vocab_txt(folder: Path) -> WordPieceParts:
    """`vocab.txt` (one piece per line, id = line number) + `tokenizer_config.json`."""
    try:
        lines = (folder / "vocab.txt").read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as err:
        raise ParrotError(f"{folder / 'vocab.txt'} is not readable ({err}).") from None
    vocab = [line.rstrip("\r") for line in (lines[:-1] if lines[-1] == "" else lines)]
    config = _read_config(folder / "tokenizer_config.json")
    names = {key: _token_name(config.get(key), default) for key, default in
             (("unk_token", "[UNK]"), ("cls_token", "[CLS]"), ("sep_token", "[SEP]"),
              ("pad_token", "[PAD]"), ("mask_token", "[MASK]"))}
    index = {piece: i for i, piece in enumerate(vocab)}
    specials = {name: index[name] for name in names.values() if name in index}
    return WordPieceParts(
        vocab=vocab, special_tokens=specials, unk_token=names["unk_token"],
        lowercase=bool(config.get("do_lower_case", True)),
        strip_accents=config.get("strip_accents"),
        handle_chinese_chars=bool(config.get("tokenize_chinese_chars", True)),
        cls_token=names["cls_token"], sep_token=names["sep_token"],
    )


def _token_name(value: Any, default: str) -> str:
    value = value.get("content") if isinstance(value, dict) else value
    return value if isinstance(value, str) else default


def _read_config(path: Path) -> dict[str, Any]:
    data = read_json_file(path, "JSON file") if path.is_file() else {}
    return data if isinstance(data, dict) else {}


def is_wordpiece_json(path: Path) -> bool:
    """Whether `path` is a tokenizer.json whose model is WordPiece."""
    try:
        return _is_wordpiece(read_json_file(path))
    except ParrotError:
        return False


def _is_wordpiece(data: Any) -> bool:
    model = data.get("model") if isinstance(data, dict) else None
    return isinstance(model, dict) and model.get("type") == "WordPiece"


def load_wordpiece(path: Path) -> WordPieceParts:
    """`tokenizer.json` (the file or its folder) first, else the folder's `vocab.txt`."""
    file = path / "tokenizer.json" if path.is_dir() else path
    if file.is_file() and file.suffix == ".json":
        data = read_json_file(file)
        if not _is_wordpiece(data):
            raise ParrotError(f"{file} is not a WordPiece tokenizer.")
        try:
            return read_wordpiece_json(data, str(file))
        except MALFORMED as err:
            raise ParrotError(f"{file} is a corrupt tokenizer.json "
                              f"({type(err).__name__}: {str(err)[:160]}).") from None
    folder = path if path.is_dir() else path.parent
    if (folder / "vocab.txt").is_file():
        return read_vocab_txt(folder)
    raise ParrotError(f"No WordPiece tokenizer at {path}; give a tokenizer.json or a folder "
                      "with vocab.txt.")


def write_wordpiece_json(parts: WordPieceParts) -> dict[str, Any]:
    """The Hugging Face `tokenizer.json` structure for `parts` (readable by `tokenizers`)."""
    added = [added_token(i, s) for s, i in sorted(parts.special_tokens.items(),
                                                   key=lambda item: item[1])]
    cls_id = parts.special_tokens.get(parts.cls_token)
    sep_id = parts.special_tokens.get(parts.sep_token)
    post = None
    if cls_id is not None and sep_id is not None:
        post = {"type": "BertProcessing", "sep": [parts.sep_token, sep_id],
                "cls": [parts.cls_token, cls_id]}
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": parts.clean_text,
                       "handle_chinese_chars": parts.handle_chinese_chars,
                       "strip_accents": parts.strip_accents, "lowercase": parts.lowercase},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": post,
        "decoder": {"type": "WordPiece", "prefix": parts.prefix, "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": parts.unk_token,
                  "continuing_subword_prefix": parts.prefix,
                  "max_input_chars_per_word": parts.max_word_chars,
                  "vocab": {piece: i for i, piece in enumerate(parts.vocab)}},
    }


def save_wordpiece(parts: WordPieceParts, directory: Path) -> None:
    atomic_write_json(directory / "tokenizer.json", write_wordpiece_json(parts))
