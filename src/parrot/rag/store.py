"""Vector stores: one small interface, a brute-force NumPy reference, and `open_store`.

A store holds files (path → content hash), their chunks (id, path, kind, character offsets,
text) and one unit vector per chunk, and answers two searches:

    vector_search(q, k)    the k chunks of highest cosine similarity q·v (vectors are unit)
    keyword_search(text, k) the k chunks of highest BM25 score for the query's words

`replace_files` writes a batch of files atomically (all of their chunks, vectors and hashes,
or none), so an interrupted indexer never leaves half a file behind. The embedded store is
SQLite + sqlite-vec (`sqlite_store.py`), the server one PostgreSQL + pgvector (`pg_store.py`);
`NumpyStore` here computes both searches by their formulas and is the reference in tests;
`stores.open_store` opens one of the real ones from a path or DSN.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from parrot.errors import ParrotError


@dataclass(frozen=True)
class Filters:
    """Metadata filters: a path prefix (absolute) and the file kinds to keep (empty: all)."""

    path_prefix: str | None = None
    kinds: tuple[str, ...] = ()

    def keep(self, path: str, kind: str) -> bool:
        return ((self.path_prefix is None or path.startswith(self.path_prefix))
                and (not self.kinds or kind in self.kinds))


NO_FILTERS = Filters()


@dataclass(frozen=True)
class StoredChunk:
    """A chunk as stored: `text == file_text[start:end]`."""

    id: int
    path: str
    kind: str
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class FileChunks:
    """One file to (re)write: its hash, kind and chunks (text, start, end), in order."""

    path: str
    digest: str
    kind: str
    chunks: tuple[tuple[str, int, int], ...]


class Store(Protocol):
    """What indexing and retrieval need from a vector store."""

    location: str

    def meta(self) -> dict[str, str]: ...
    def set_meta(self, model: str, dim: int) -> None: ...
    def files(self) -> dict[str, str]: ...
    def replace_files(self, files: Sequence[FileChunks], vectors: np.ndarray) -> None: ...
    def remove_files(self, paths: Sequence[str]) -> None: ...
    def vector_search(self, query: np.ndarray, k: int,
                      filters: Filters = NO_FILTERS) -> list[tuple[int, float]]: ...
    def keyword_search(self, query: str, k: int,
                       filters: Filters = NO_FILTERS) -> list[tuple[int, float]]: ...
    def chunks(self, ids: Sequence[int]) -> list[StoredChunk]: ...
    def count(self) -> int: ...
    def size_bytes(self) -> int: ...
    def writer(self, wait_s: float = 0.0) -> Any: ...
    def close(self) -> None: ...


def check_model(store: Store, model: str, dim: int) -> None:
    """Record the embedding model in a new store; refuse a store built with another one."""
    meta = store.meta()
    if not meta.get("model"):
        store.set_meta(model, dim)
        return
    if meta["model"] != model or int(meta["dim"]) != dim:
        raise ParrotError(f"{store.location} was indexed with the embedding model "
                          f"{meta['model']} ({meta['dim']} dimensions), not {model} ({dim}); "
                          f"use --embed-model {meta['model']} or a new store.")


def query_words(text: str) -> list[str]:
    """The words of a keyword query, lower-cased, each once, in order (no operators)."""
    return list(dict.fromkeys(w.lower() for w in re.findall(r"\w+", text)))


def bm25_scores(query: Sequence[str], docs: Sequence[Sequence[str]], k1: float = 1.2,
                b: float = 0.75) -> np.ndarray:
    """Okapi BM25 of each document (a list of words) for the query words:

        score(d) = Σ_q idf(q) · f(q,d)·(k1+1) / (f(q,d) + k1·(1 − b + b·|d|/avgdl))
        idf(q)   = max(ln((N − n(q) + 0.5) / (n(q) + 0.5)), 1e-6)

    with f the term frequency and n(q) the number of documents holding q: SQLite FTS5's
    bm25() term for term (its idf floor included), so the reference can check it.
    """
    n_docs = len(docs)
    if n_docs == 0:
        return np.zeros(0)
    counts = [Counter(d) for d in docs]
    lengths = np.array([len(d) for d in docs], dtype=np.float64)
    avgdl = max(float(lengths.mean()), 1e-9)
    scores = np.zeros(n_docs)
    for word in query:
        holding = sum(1 for c in counts if word in c)
        idf = max(math.log((n_docs - holding + 0.5) / (holding + 0.5)), 1e-6)
        freq = np.array([c.get(word, 0) for c in counts], dtype=np.float64)
        scores += idf * freq * (k1 + 1) / (freq + k1 * (1 - b + b * lengths / avgdl))
    return scores


class NumpyStore:
    """Everything in memory, every search by brute force: the reference implementation."""

    def __init__(self, location: str = ":memory:") -> None:
        self.location = location
        self._meta: dict[str, str] = {}
        self._files: dict[str, str] = {}
        self._chunks: dict[int, StoredChunk] = {}
        self._vectors: dict[int, np.ndarray] = {}
        self._next_id = 1

    def meta(self) -> dict[str, str]:
        return dict(self._meta)

    def set_meta(self, model: str, dim: int) -> None:
        self._meta = {"model": model, "dim": str(dim)}

    def files(self) -> dict[str, str]:
        return dict(self._files)

    def replace_files(self, files: Sequence[FileChunks], vectors: np.ndarray) -> None:
        if sum(len(f.chunks) for f in files) != len(vectors):
            raise ValueError("one vector per chunk")
        self.remove_files([f.path for f in files])
        row = 0
        for f in files:
            for text, start, end in f.chunks:
                self._chunks[self._next_id] = StoredChunk(self._next_id, f.path, f.kind, start,
                                                          end, text)
                self._vectors[self._next_id] = np.asarray(vectors[row], dtype=np.float32)
                self._next_id += 1
                row += 1
            self._files[f.path] = f.digest

    def remove_files(self, paths: Sequence[str]) -> None:
        gone = set(paths)
        for cid in [c.id for c in self._chunks.values() if c.path in gone]:
            del self._chunks[cid], self._vectors[cid]
        for path in gone:
            self._files.pop(path, None)

    def _kept(self, filters: Filters) -> list[int]:
        return [c.id for c in self._chunks.values() if filters.keep(c.path, c.kind)]

    def vector_search(self, query: np.ndarray, k: int,
                      filters: Filters = NO_FILTERS) -> list[tuple[int, float]]:
        ids = self._kept(filters)
        if not ids:
            return []
        matrix = np.stack([self._vectors[i] for i in ids]).astype(np.float64)
        scores = matrix @ np.asarray(query, dtype=np.float64)  # cosine: rows are unit
        order = np.lexsort((np.array(ids), -scores))[:k]
        return [(ids[j], float(scores[j])) for j in order]

    def keyword_search(self, query: str, k: int,
                       filters: Filters = NO_FILTERS) -> list[tuple[int, float]]:
        ids = self._kept(filters)
        words = query_words(query)
        docs = [query_words_all(self._chunks[i].text) for i in ids]
        scores = bm25_scores(words, docs)
        order = sorted((j for j in range(len(ids)) if scores[j] > 0),
                       key=lambda j: (-scores[j], ids[j]))[:k]
        return [(ids[j], float(scores[j])) for j in order]

    def chunks(self, ids: Sequence[int]) -> list[StoredChunk]:
        return [self._chunks[i] for i in ids if i in self._chunks]

    def count(self) -> int:
        return len(self._chunks)

    def size_bytes(self) -> int:
        return sum(v.nbytes + len(self._chunks[i].text.encode()) for i, v in self._vectors.items())

    def writer(self, wait_s: float = 0.0) -> Any:
        import contextlib

        return contextlib.nullcontext()

    def close(self) -> None:
        pass


def query_words_all(text: str) -> list[str]:
    """Every word of a text, lower-cased, repeats kept (a BM25 document)."""
    return [w.lower() for w in re.findall(r"\w+", text)]
