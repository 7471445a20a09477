"""Tokenization: byte-level BPE trained here or read from Hugging Face `tokenizer.json`."""

from parrot.tokenizer.io import TokenizerParts
from parrot.tokenizer.pretokenize import PATTERNS
from parrot.tokenizer.tokenizer import SpecialTokenError, Tokenizer

__all__ = ["PATTERNS", "SpecialTokenError", "Tokenizer", "TokenizerParts"]
