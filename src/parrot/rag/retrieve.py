"""Retrieval: a question → the store's top-k chunks, by vector, keyword or both.

    vector   embed the question, k nearest chunks by cosine similarity
    keyword  BM25 over the question's words (SQLite FTS5, PostgreSQL full-text)
    hybrid   both lists, fused by reciprocal rank: score(d) = Σ_lists 1 / (c + rank(d))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from parrot.errors import ParrotError
from parrot.rag.embedder import Embedder
from parrot.rag.store import NO_FILTERS, Filters, Store

MODES = ("hybrid", "vector", "keyword")
DEFAULT_MODE = "hybrid"
RRF_C = 60  # Cormack et al. (2009): ranks past the first few matter little
_ALIASES = {"bm25": "keyword"}


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk: its rank (1 = best), score in the mode's scale, and where it is."""

    rank: int
    id: int
    score: float
    path: str
    kind: str
    start: int
    end: int
    text: str

    def to_dict(self) -> dict:
        return asdict(self)


def rrf_fuse(lists: Sequence[Sequence[int]], c: int = RRF_C) -> list[tuple[int, float]]:
    """Reciprocal-rank fusion: each id scores Σ 1/(c + rank) over the lists it is in (rank
    counted from 1); best first, ties by id. [[3, 1], [1, 2]] → 1 first (it is in both)."""
    scores: dict[int, float] = {}
    for ranked in lists:
        for rank, item in enumerate(ranked, 1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (c + rank)
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))


def check_mode(mode: str) -> str:
    mode = _ALIASES.get(mode, mode)
    if mode not in MODES:
        raise ParrotError(f"Unknown retrieval mode {mode!r}; choose one of {', '.join(MODES)}.")
    return mode


def check_k(k: int) -> int:
    if not isinstance(k, int) or k <= 0:
        raise ParrotError(f"k must be a positive number of passages, got {k}.")
    return k


def check_question(question: str, embedder: Embedder) -> str:
    if not question.strip():
        raise ParrotError("The question is empty; ask something.")
    n = len(embedder.tokenizer.encode(question))
    if n > embedder.max_tokens:
        raise ParrotError(f"The question is {n} tokens, more than the {embedder.max_tokens} the "
                          f"embedding model {embedder.name} reads; shorten it.")
    return question


def search(store: Store, embedder: Embedder, query: str, k: int = 5, mode: str = DEFAULT_MODE,
           filters: Filters = NO_FILTERS, query_vector: Any = None) -> list[Hit]:
    """The top-k chunks of `store` for `query` (see the module docstring); `query_vector`,
    when given, is the query's embedding computed beforehand (batches, benchmarks)."""
    check_k(k)
    mode = check_mode(mode)
    check_question(query, embedder)
    depth = max(k, 50) if mode == "hybrid" else k
    ranked: list[tuple[int, float]] = []
    lists = []
    if mode in ("vector", "hybrid"):
        vector = embedder.embed([query])[0] if query_vector is None else query_vector
        ranked = store.vector_search(vector, depth, filters)
        lists.append([i for i, _ in ranked])
    if mode in ("keyword", "hybrid"):
        ranked = store.keyword_search(query, depth, filters)
        lists.append([i for i, _ in ranked])
    if mode == "hybrid":
        ranked = rrf_fuse(lists)
    ranked = ranked[:k]
    chunks = {c.id: c for c in store.chunks([i for i, _ in ranked])}
    return [Hit(r, i, s, chunks[i].path, chunks[i].kind, chunks[i].start, chunks[i].end,
                chunks[i].text) for r, (i, s) in enumerate(ranked, 1) if i in chunks]
