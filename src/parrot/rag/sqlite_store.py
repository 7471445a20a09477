"""The embedded store: one SQLite file with sqlite-vec for vectors and FTS5 for BM25.

Python's own `sqlite3` here cannot load extensions, so the file is opened with `apsw`, which
can, and `sqlite_vec` is loaded into it. Tables:

    meta(key, value)                       embedding model name and dimension
    files(path, digest, kind, chunks)      one row per indexed file (its content hash)
    chunks(id, path, kind, start, end, text)
    vectors   vec0(embedding float[dim] distance_metric=cosine), rowid = chunk id
    chunks_fts fts5(text) over chunks (porter stemming), rowid = chunk id

A batch of files is written in one transaction (WAL journal), so a process killed mid-write
leaves the file as it was before the batch. Writers take an exclusive `flock` on
`FILE.lock` (released by the kernel when a writer dies); a second writer waits `wait_s`
seconds and then fails with one sentence. Vector search is exact: vec0's brute-force
KNN without filters, a scan with `vec_distance_cosine` over the filtered rows with them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from parrot.errors import ParrotError
from parrot.rag.store import NO_FILTERS, FileChunks, Filters, StoredChunk, query_words

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files(path TEXT PRIMARY KEY, digest TEXT NOT NULL,
                                 kind TEXT NOT NULL, chunks INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS chunks(id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL,
                                  kind TEXT NOT NULL, start_char INTEGER NOT NULL,
                                  end_char INTEGER NOT NULL, text TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_by_path ON chunks(path);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    text, content='chunks', content_rowid='id', tokenize='porter unicode61');
"""


def _connect(path: Path):
    import apsw
    import sqlite_vec

    try:
        conn = apsw.Connection(str(path))
        conn.enable_load_extension(True)
        conn.load_extension(sqlite_vec.loadable_path())
        conn.enable_load_extension(False)
        conn.set_busy_timeout(30_000)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(_SCHEMA)
    except apsw.Error as err:
        raise ParrotError(f"Cannot open {path} as a parrot store ({err}); give a store "
                          "file made by `parrot rag index`, or a new path.") from err
    return conn


def _filter_sql(filters: Filters, alias: str = "c") -> tuple[str, list]:
    """A WHERE fragment (starting with AND) and its parameters for the filters."""
    sql, args = "", []
    if filters.path_prefix is not None:
        sql += f" AND substr({alias}.path, 1, ?) = ?"
        args += [len(filters.path_prefix), filters.path_prefix]
    if filters.kinds:
        sql += f" AND {alias}.kind IN ({', '.join('?' * len(filters.kinds))})"
        args += list(filters.kinds)
    return sql, args


class SqliteStore:
    """A store in one SQLite file (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.location = str(self.path)
        if self.path.parent and not self.path.parent.is_dir():
            raise ParrotError(f"The folder of {self.path} does not exist; create it first.")
        self.conn = _connect(self.path)

    # ---- metadata and files ----------------------------------------------------------
    def meta(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT key, value FROM meta").fetchall())

    def set_meta(self, model: str, dim: int) -> None:
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('model', ?), ('dim', ?)",
                              (model, str(dim)))
            self.conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS vectors USING vec0("
                              f"embedding float[{int(dim)}] distance_metric=cosine)")

    def files(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT path, digest FROM files").fetchall())

    # ---- writing -----------------------------------------------------------------------
    def replace_files(self, files: Sequence[FileChunks], vectors: np.ndarray) -> None:
        """All of `files` (old chunks out, new chunks, vectors and hashes in) or nothing."""
        if sum(len(f.chunks) for f in files) != len(vectors):
            raise ValueError("one vector per chunk")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        row = 0
        with self.conn:
            self._delete(f.path for f in files)
            for f in files:
                for text, start, end in f.chunks:
                    self.conn.execute("INSERT INTO chunks(path, kind, start_char, end_char, text)"
                                      " VALUES (?, ?, ?, ?, ?)", (f.path, f.kind, start, end, text))
                    cid = self.conn.last_insert_rowid()
                    self.conn.execute("INSERT INTO chunks_fts(rowid, text) VALUES (?, ?)",
                                      (cid, text))
                    self.conn.execute("INSERT INTO vectors(rowid, embedding) VALUES (?, ?)",
                                      (cid, vectors[row].tobytes()))
                    row += 1
                self.conn.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)",
                                  (f.path, f.digest, f.kind, len(f.chunks)))

    def remove_files(self, paths: Sequence[str]) -> None:
        with self.conn:
            self._delete(paths)

    def _delete(self, paths) -> None:
        for path in paths:
            old = self.conn.execute("SELECT id, text FROM chunks WHERE path = ?",
                                    (path,)).fetchall()
            for cid, text in old:
                # an external-content FTS5 table forgets a row only when told its old text
                self.conn.execute("INSERT INTO chunks_fts(chunks_fts, rowid, text) "
                                  "VALUES ('delete', ?, ?)", (cid, text))
                self.conn.execute("DELETE FROM vectors WHERE rowid = ?", (cid,))
            self.conn.execute("DELETE FROM chunks WHERE path = ?", (path,))
            self.conn.execute("DELETE FROM files WHERE path = ?", (path,))

    @contextlib.contextmanager
    def writer(self, wait_s: float = 0.0) -> Iterator[None]:
        """Hold the store's writer lock; another holder makes this wait up to `wait_s`
        seconds and then fail with a ParrotError."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(lock_path, "a+") as handle:
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise ParrotError(
                            f"Another indexer is writing to {self.path}; wait for it to finish "
                            "or pass --wait SECONDS to queue behind it.") from None
                    time.sleep(0.1)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # ---- searching ---------------------------------------------------------------------
    def vector_search(self, query: np.ndarray, k: int,
                      filters: Filters = NO_FILTERS) -> list[tuple[int, float]]:
        if not self._has_vectors():
            return []
        blob = np.ascontiguousarray(query, dtype=np.float32).tobytes()
        if filters == NO_FILTERS:
            rows = self.conn.execute("SELECT rowid, distance FROM vectors WHERE embedding MATCH ?"
                                     " AND k = ? ORDER BY distance", (blob, k)).fetchall()
        else:
            where, args = _filter_sql(filters)
            rows = self.conn.execute(
                "SELECT v.rowid, vec_distance_cosine(v.embedding, ?) AS d FROM vectors v "
                f"JOIN chunks c ON c.id = v.rowid WHERE 1 {where} ORDER BY d, v.rowid LIMIT ?",
                (blob, *args, k)).fetchall()
        # equal distances (a passage that two files share) in id order, as the reference
        return [(int(i), 1.0 - float(d)) for i, d in sorted(rows, key=lambda r: (r[1], r[0]))]

    def keyword_search(self, query: str, k: int,
                       filters: Filters = NO_FILTERS) -> list[tuple[int, float]]:
        words = query_words(query)
        if not words:
            return []
        match = " OR ".join(f'"{w}"' for w in words)
        where, args = _filter_sql(filters)
        rows = self.conn.execute(
            "SELECT f.rowid, bm25(chunks_fts) AS s FROM chunks_fts f JOIN chunks c ON "
            f"c.id = f.rowid WHERE chunks_fts MATCH ? {where} ORDER BY s, f.rowid LIMIT ?",
            (match, *args, k)).fetchall()
        return [(int(i), -float(s)) for i, s in rows]  # FTS5's bm25() is negated: lower is better

    def chunks(self, ids: Sequence[int]) -> list[StoredChunk]:
        if not ids:
            return []
        marks = ", ".join("?" * len(ids))
        rows = self.conn.execute("SELECT id, path, kind, start_char, end_char, text FROM chunks "
                                 f"WHERE id IN ({marks})", tuple(ids)).fetchall()
        found = {r[0]: StoredChunk(*r) for r in rows}
        return [found[i] for i in ids if i in found]

    def count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM chunks").fetchall()[0][0])

    def size_bytes(self) -> int:
        """The file plus its write-ahead log and shared-memory index, as on disk."""
        names = [self.path.name + suffix for suffix in ("", "-wal", "-shm")]
        return sum(os.path.getsize(self.path.with_name(n)) for n in names
                   if self.path.with_name(n).exists())

    def _has_vectors(self) -> bool:
        return bool(self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'vectors'")
                    .fetchall())

    def close(self) -> None:
        self.conn.close()
