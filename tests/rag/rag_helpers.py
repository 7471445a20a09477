"""Doubles for the RAG tests: a hashing embedder (fast, deterministic) and a tiny PDF."""

from __future__ import annotations

import hashlib
import re
import time

import numpy as np


class WordTokenizer:
    """One token per word or punctuation mark (WordPiece-like counting, no vocabulary)."""

    def encode(self, text: str, allowed_special: str = "none") -> list[int]:
        return [int(hashlib.md5(w.encode()).hexdigest()[:6], 16)
                for w in re.findall(r"\w+|[^\w\s]", text)]


class HashEmbedder:
    """Bag-of-words vectors from hashed words, L2-normalized: similar wording → close
    vectors. Counts every `embed` call and text; `delay` slows each call (kill tests)."""

    def __init__(self, dim: int = 64, name: str = "hash-embedder", delay: float = 0.0,
                 max_length: int = 130) -> None:
        self.dim, self.name, self.delay = dim, name, delay
        self.tokenizer = WordTokenizer()
        self.max_length = max_length
        self.calls = 0
        self.texts = 0

    @property
    def max_tokens(self) -> int:
        return self.max_length - 2

    def embed(self, texts) -> np.ndarray:
        self.calls += 1
        self.texts += len(texts)
        if self.delay:
            time.sleep(self.delay)
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest()[:8], 16) % self.dim] += 1.0
            out[row] /= max(np.linalg.norm(out[row]), 1e-9)
        return out

    def count_tokens(self, texts) -> list[int]:
        return [len(self.tokenizer.encode(t)) for t in texts]


def make_pdf(lines: list[str]) -> bytes:
    """A one-page PDF showing `lines` in Helvetica (offsets in the xref computed)."""
    stream = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(
        f"({line}) '" for line in lines) + " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources "
        "<< /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream",
    ]
    out, offsets = b"%PDF-1.4\n", []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += (f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n"
            "%%EOF\n").encode()
    return out


def unit_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)
