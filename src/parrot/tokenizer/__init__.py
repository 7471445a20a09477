"""Tokenization: byte-level BPE trained here or read from Hugging Face `tokenizer.json`,
and BERT's WordPiece (read from `tokenizer.json` or `vocab.txt`)."""

from pathlib import Path

from parrot.tokenizer.io import TokenizerParts
from parrot.tokenizer.pretokenize import PATTERNS
from parrot.tokenizer.spm import SentencePieceParts
from parrot.tokenizer.tokenizer import SpecialTokenError, Tokenizer
from parrot.tokenizer.wordpiece import WordPieceParts, WordPieceTokenizer
from parrot.tokenizer.wordpiece_io import is_wordpiece_json


def load_tokenizer(path: str | Path) -> Tokenizer | WordPieceTokenizer:
    """The tokenizer at `path` (a tokenizer.json or its folder), of whichever kind it is.

    A folder with only `vocab.txt` (older BERT releases) is read as WordPiece.
    """
    path = Path(path)
    file = path / "tokenizer.json" if path.is_dir() else path
    if is_wordpiece_json(file) or (path.is_dir() and not file.is_file()
                                   and (path / "vocab.txt").is_file()):
        return WordPieceTokenizer.load(path)
    return Tokenizer.load(path)


__all__ = ["PATTERNS", "SentencePieceParts", "SpecialTokenError", "Tokenizer", "TokenizerParts",
           "WordPieceParts", "WordPieceTokenizer", "load_tokenizer"]
