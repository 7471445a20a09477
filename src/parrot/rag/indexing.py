"""Incremental indexing: files → chunks → vectors → store, keyed by content hash.

    list files → drop stored files under the given roots that are gone → for each file:
    hash unchanged? skip : read → chunk → (batch) embed → write the batch in one transaction

A file is skipped when its sha256 equals the stored one, so re-indexing an unchanged folder
embeds nothing. Batches of files are written atomically, so a run killed at any point leaves
every stored file complete, and the next run picks up the files that did not get in. The
whole run holds the store's writer lock.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from parrot.errors import ParrotError
from parrot.rag.chunking import ChunkConfig, chunk_text
from parrot.rag.documents import file_digest, kind_of, list_files, read_document
from parrot.rag.embedder import Embedder
from parrot.rag.store import FileChunks, Store, check_model
from parrot.utils.progress import progress_bar


@dataclass(frozen=True)
class IndexReport:
    """What one indexing run did."""

    files: int
    indexed: int
    unchanged: int
    removed: int
    skipped: int
    chunks: int
    seconds: float

    @property
    def chunks_per_s(self) -> float:
        return self.chunks / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "chunks_per_s": round(self.chunks_per_s, 2)}


def _warn(text: str) -> None:
    print(f"parrot: warning: {text}", file=sys.stderr, flush=True)


def _gone(stored: dict[str, str], roots: Sequence[Path], present: set[str]) -> list[str]:
    """Stored files under the indexed roots that are no longer there."""
    prefixes = [str(r) + ("/" if r.is_dir() else "") for r in roots]
    return sorted(p for p in stored if p not in present
                  and any(p == pre or (pre.endswith("/") and p.startswith(pre))
                          for pre in prefixes))


class _Batch:
    """Files waiting to be embedded and written together."""

    def __init__(self, store: Store, embedder: Embedder) -> None:
        self.store, self.embedder = store, embedder
        self.files: list[FileChunks] = []
        self.size = 0
        self.written = 0

    def add(self, item: FileChunks) -> None:
        self.files.append(item)
        self.size += len(item.chunks)

    def flush(self) -> int:
        if not self.files:
            return 0
        texts = [text for f in self.files for text, _, _ in f.chunks]
        import numpy as np

        vectors = (self.embedder.embed(texts) if texts
                   else np.zeros((0, self.embedder.dim), np.float32))
        self.store.replace_files(self.files, vectors)
        written, self.files, self.size = len(texts), [], 0
        self.written += written
        return written


def index(paths: Sequence[str | Path], store: Store, embedder: Embedder, *,
          chunking: ChunkConfig | None = None, text_field: str = "text",
          batch_chunks: int = 128, wait_s: float = 0.0, show_progress: bool = True,
          warn: Callable[[str], None] = _warn) -> IndexReport:
    """Bring `store` up to date with the files under `paths` (see the module docstring)."""
    chunking = chunking or ChunkConfig(max_tokens=min(200, embedder.max_tokens))
    if chunking.max_tokens > embedder.max_tokens:
        raise ParrotError(f"Chunks of {chunking.max_tokens} tokens do not fit {embedder.name}, "
                          f"which embeds at most {embedder.max_tokens}; lower --chunk-tokens.")
    files = list_files(paths)
    if not files:
        raise ParrotError(f"No documents to index under {', '.join(map(str, paths))} (parrot "
                          "reads .txt .md .rst .html .py .pdf .jsonl); give a folder with some.")
    start = time.perf_counter()
    with store.writer(wait_s):
        check_model(store, embedder.name, embedder.dim)
        stored = store.files()
        gone = _gone(stored, [Path(p).expanduser().resolve() for p in paths],
                     {str(f) for f in files})
        store.remove_files(gone)
        batch, unchanged, skipped = _Batch(store, embedder), 0, 0
        with progress_bar("indexing", total=len(files), enabled=show_progress) as bar:
            for n, path in enumerate(files, 1):
                try:
                    data = path.read_bytes()
                    digest = file_digest(data)
                    if stored.get(str(path)) == digest:
                        unchanged += 1
                        continue
                    text = read_document(path, data, text_field)
                except (OSError, ValueError) as err:
                    warn(f"skipped {path}: {err}")
                    skipped += 1
                    continue
                finally:
                    rate = batch.written / max(time.perf_counter() - start, 1e-9)
                    bar.update(0, completed=n, description=f"indexing: {batch.written} chunks, "
                                                           f"{rate:.1f} chunks/s")
                pieces = chunk_text(text, embedder.count_tokens, chunking)
                batch.add(FileChunks(str(path), digest, kind_of(path) or "text",
                                     tuple((c.text, c.start, c.end) for c in pieces)))
                if batch.size >= batch_chunks:
                    batch.flush()
            batch.flush()
    return IndexReport(files=len(files), indexed=len(files) - unchanged - skipped,
                       unchanged=unchanged, removed=len(gone), skipped=skipped,
                       chunks=batch.written, seconds=time.perf_counter() - start)
