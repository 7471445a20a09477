"""Retrieval-augmented generation: index documents, search them, answer from them.

    files → chunks (embedding-model tokens, overlap, paragraph/sentence ends) → vectors
          → a store (SQLite + sqlite-vec, PostgreSQL + pgvector) → top-k by vector, BM25 or
          both (reciprocal-rank fusion) → numbered passages in the prompt → a cited answer

The small Python API (what `parrot rag`, `parrot chat --rag`, `parrot serve --rag` and the
tools call); `store` is a SQLite path, a PostgreSQL DSN or an open `Store`:

    report = index(["notes/"], "notes.db", home=HOME)
    hits = search("notes.db", "how do I rotate the logs?", k=5, home=HOME)
    answer = ask("notes.db", "how do I rotate the logs?", llm, home=HOME)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from parrot.rag.chunking import ChunkConfig
from parrot.rag.embedder import DEFAULT_EMBED_MODEL, Embedder
from parrot.rag.indexing import IndexReport
from parrot.rag.pipeline import Answer, RagPipeline, RagSession
from parrot.rag.retrieve import DEFAULT_MODE, MODES, Hit
from parrot.rag.store import NO_FILTERS, Filters, Store, check_model
from parrot.rag.stores import open_store

__all__ = ["Answer", "ChunkConfig", "DEFAULT_EMBED_MODEL", "DEFAULT_MODE", "Embedder", "Filters",
           "Hit", "IndexReport", "MODES", "RagPipeline", "RagSession", "Store", "ask",
           "embedder_for", "index", "open_store", "search"]


def _store(store: str | Path | Store, create: bool = False) -> Store:
    return open_store(store, create=create) if isinstance(store, (str, Path)) else store


def embedder_for(store: Store, model: str | None = None, home: str | Path | None = None
                 ) -> Embedder:
    """The embedder a store was built with (or `model`, refused if it is another one)."""
    from parrot.errors import ParrotError

    recorded = store.meta().get("model")
    if recorded is None and model is None:
        raise ParrotError(f"{store.location} holds no index yet; build it with "
                          f"`parrot rag index FOLDER --store {store.location}`.")
    embedder = Embedder.load(model or recorded, home=home)
    if recorded is not None:
        check_model(store, embedder.name, embedder.dim)
    return embedder


def index(paths: Sequence[str | Path], store: str | Path | Store, *,
          embed_model: str | Embedder = DEFAULT_EMBED_MODEL, home: str | Path | None = None,
          chunk_tokens: int | None = None, overlap: int = 32, text_field: str = "text",
          wait_s: float = 0.0, show_progress: bool = True) -> IndexReport:
    """Index (or update) `store` with the files under `paths`; see `indexing.index`."""
    from parrot.rag.indexing import index as run_index

    embedder = embed_model if isinstance(embed_model, Embedder) else \
        Embedder.load(embed_model, home=home)
    tokens = chunk_tokens or min(200, embedder.max_tokens)
    return run_index(paths, _store(store, create=True), embedder,
                     chunking=ChunkConfig(tokens, min(overlap, tokens - 1)),
                     text_field=text_field, wait_s=wait_s, show_progress=show_progress)


def search(store: str | Path | Store, query: str, k: int = 5, mode: str = DEFAULT_MODE,
           filters: Filters = NO_FILTERS, *, embedder: Embedder | None = None,
           home: str | Path | None = None) -> list[Hit]:
    """The top-k chunks for `query`, best first: score, path, character offsets, text."""
    from parrot.rag.retrieve import search as run_search

    store = _store(store)
    return run_search(store, embedder or embedder_for(store, home=home), query, k, mode,
                      filters)


def ask(store: str | Path | Store, question: str, llm: Any, *, k: int = 4,
        mode: str = DEFAULT_MODE, filters: Filters = NO_FILTERS,
        embedder: Embedder | None = None, home: str | Path | None = None,
        params: Any = None) -> Answer:
    """A cited answer to `question` from `llm` (an object with .engine and .template)."""
    store = _store(store)
    options = {} if params is None else {"params": params}
    pipeline = RagPipeline(store, embedder or embedder_for(store, home=home), llm, k=k,
                           mode=mode, filters=filters, **options)
    return pipeline.ask(question)
