"""The server store: PostgreSQL with pgvector (HNSW) and PostgreSQL full-text search.

Any server reachable by DSN (`postgresql://user:pass@host:port/db`) with the `vector`
extension available. Tables (prefix `parrot_rag` unless told otherwise):

    PREFIX_meta(key, value)
    PREFIX_files(path, digest, kind, chunks)
    PREFIX_chunks(id bigserial, path, kind, start_char, end_char, text, embedding vector(dim),
                  tsv tsvector generated from text with the 'english' configuration)
    an HNSW index on embedding (vector_cosine_ops) and a GIN index on tsv

Vector search orders by pgvector's cosine distance `<=>`, through the HNSW index
(approximate) or, with `exact=True`, by a sequential scan (index scans off in that
transaction). Keyword search ranks with `ts_rank_cd(tsv, query, 1)` (cover density,
normalised by log length): PostgreSQL's own ranking, not BM25 term for term. A batch of
files is one transaction; writers hold a session advisory lock on the prefix.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator, Sequence

import numpy as np

from parrot.errors import ParrotError
from parrot.rag.store import NO_FILTERS, FileChunks, Filters, StoredChunk, query_words


def redact(dsn: str) -> str:
    """The DSN without its password, for messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", dsn)


def vector_text(vector: np.ndarray) -> str:
    """pgvector's text form: [0.1,0.2,...] (float32 values written exactly)."""
    return "[" + ",".join(repr(float(x)) for x in np.asarray(vector, np.float32)) + "]"


def _filter_sql(filters: Filters) -> tuple[str, list]:
    sql, args = "", []
    if filters.path_prefix is not None:
        sql += " AND starts_with(path, %s)"
        args.append(filters.path_prefix)
    if filters.kinds:
        sql += " AND kind = ANY(%s)"
        args.append(list(filters.kinds))
    return sql, args


class PgStore:
    """A store in PostgreSQL tables (see the module docstring)."""

    def __init__(self, dsn: str, *, prefix: str = "parrot_rag", exact: bool = False,
                 connect_timeout: int = 5) -> None:
        try:
            import psycopg
        except ImportError:
            raise ParrotError("A PostgreSQL store needs psycopg; install it with "
                              "pip install 'parrot[pg]'.") from None
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", prefix):
            raise ParrotError(f"Table prefix {prefix!r} must be lower-case letters, digits, _.")
        self.location, self.prefix, self.exact = redact(dsn), prefix, exact
        try:
            self.conn = psycopg.connect(dsn, connect_timeout=connect_timeout, autocommit=True)
        except psycopg.Error as err:
            reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            raise ParrotError(f"Cannot reach PostgreSQL at {self.location} ({reason}); check "
                              "that the server is running and the DSN is right.") from err
        p = prefix
        with self.conn.transaction():
            try:
                self.conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except psycopg.Error as err:
                raise ParrotError(f"The PostgreSQL server at {self.location} has no pgvector "
                                  "extension; install pgvector there.") from err
            self.conn.execute(f"CREATE TABLE IF NOT EXISTS {p}_meta(key text PRIMARY KEY, "
                              "value text NOT NULL)")
            self.conn.execute(f"CREATE TABLE IF NOT EXISTS {p}_files(path text PRIMARY KEY, "
                              "digest text NOT NULL, kind text NOT NULL, chunks int NOT NULL)")

    def _t(self, name: str) -> str:
        return f"{self.prefix}_{name}"

    # ---- metadata and files ----------------------------------------------------------
    def meta(self) -> dict[str, str]:
        return dict(self.conn.execute(f"SELECT key, value FROM {self._t('meta')}").fetchall())

    def set_meta(self, model: str, dim: int) -> None:
        c = self._t("chunks")
        with self.conn.transaction():
            self.conn.execute(f"INSERT INTO {self._t('meta')} VALUES ('model', %s), ('dim', %s) "
                              "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                              (model, str(dim)))
            self.conn.execute(
                f"CREATE TABLE IF NOT EXISTS {c}(id bigserial PRIMARY KEY, path text NOT NULL, "
                "kind text NOT NULL, start_char int NOT NULL, end_char int NOT NULL, "
                f"text text NOT NULL, embedding vector({int(dim)}) NOT NULL, tsv tsvector "
                "GENERATED ALWAYS AS (to_tsvector('english', text)) STORED)")
            self.conn.execute(f"CREATE INDEX IF NOT EXISTS {c}_path ON {c}(path)")
            self.conn.execute(f"CREATE INDEX IF NOT EXISTS {c}_hnsw ON {c} "
                              "USING hnsw (embedding vector_cosine_ops)")
            self.conn.execute(f"CREATE INDEX IF NOT EXISTS {c}_tsv ON {c} USING gin (tsv)")

    def files(self) -> dict[str, str]:
        return dict(self.conn.execute(f"SELECT path, digest FROM {self._t('files')}").fetchall())

    # ---- writing -----------------------------------------------------------------------
    def replace_files(self, files: Sequence[FileChunks], vectors: np.ndarray) -> None:
        if sum(len(f.chunks) for f in files) != len(vectors):
            raise ValueError("one vector per chunk")
        rows = ((f.path, f.kind, start, end, text)
                for f in files for text, start, end in f.chunks)
        with self.conn.transaction():
            self._delete([f.path for f in files])
            with self.conn.cursor().copy(
                    f"COPY {self._t('chunks')} (path, kind, start_char, end_char, text, "
                    "embedding) FROM STDIN") as copy:
                for row, vector in zip(rows, vectors, strict=True):
                    copy.write_row((*row, vector_text(vector)))
            with self.conn.cursor() as cur:
                cur.executemany(f"INSERT INTO {self._t('files')} VALUES (%s, %s, %s, %s)",
                                [(f.path, f.digest, f.kind, len(f.chunks)) for f in files])

    def remove_files(self, paths: Sequence[str]) -> None:
        with self.conn.transaction():
            self._delete(paths)

    def _delete(self, paths: Sequence[str]) -> None:
        if paths and self._has_chunks():
            self.conn.execute(f"DELETE FROM {self._t('chunks')} WHERE path = ANY(%s)",
                              (list(paths),))
        self.conn.execute(f"DELETE FROM {self._t('files')} WHERE path = ANY(%s)", (list(paths),))

    @contextlib.contextmanager
    def writer(self, wait_s: float = 0.0) -> Iterator[None]:
        """Hold the advisory lock of this prefix; wait up to `wait_s` s, then fail clearly."""
        key = f"parrot-rag:{self.prefix}"
        deadline = time.monotonic() + wait_s
        while not self.conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))",
                                    (key,)).fetchone()[0]:
            if time.monotonic() >= deadline:
                raise ParrotError(f"Another indexer is writing to {self.location}; wait for it "
                                  "to finish or pass --wait SECONDS to queue behind it.")
            time.sleep(0.1)
        try:
            yield
        finally:
            self.conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))

    # ---- searching ---------------------------------------------------------------------
    def vector_search(self, query: np.ndarray, k: int,
                      filters: Filters = NO_FILTERS) -> list[tuple[int, float]]:
        if not self._has_chunks():
            return []
        where, args = _filter_sql(filters)
        with self.conn.transaction():
            if self.exact:
                self.conn.execute("SET LOCAL enable_indexscan = off")
            rows = self.conn.execute(
                f"SELECT id, embedding <=> %s::vector AS d FROM {self._t('chunks')} "
                f"WHERE true {where} ORDER BY d LIMIT %s",
                (vector_text(query), *args, k)).fetchall()
        # ties in id order (ORDER BY d, id would keep the HNSW index from being used)
        return [(int(i), 1.0 - float(d)) for i, d in sorted(rows, key=lambda r: (r[1], r[0]))]

    def keyword_search(self, query: str, k: int,
                       filters: Filters = NO_FILTERS) -> list[tuple[int, float]]:
        words = query_words(query)
        if not words or not self._has_chunks():
            return []
        where, args = _filter_sql(filters)
        tsquery = " | ".join(f"'{w}'" for w in words)
        with self.conn.transaction():
            rows = self.conn.execute(
                f"SELECT id, ts_rank_cd(tsv, q, 1) AS s FROM {self._t('chunks')}, "
                f"to_tsquery('english', %s) q WHERE tsv @@ q {where} "
                "ORDER BY s DESC, id LIMIT %s", (tsquery, *args, k)).fetchall()
        return [(int(i), float(s)) for i, s in rows]

    def chunks(self, ids: Sequence[int]) -> list[StoredChunk]:
        if not ids:
            return []
        with self.conn.transaction():
            rows = self.conn.execute(f"SELECT id, path, kind, start_char, end_char, text FROM "
                                     f"{self._t('chunks')} WHERE id = ANY(%s)",
                                     (list(ids),)).fetchall()
        found = {r[0]: StoredChunk(*r) for r in rows}
        return [found[i] for i in ids if i in found]

    def count(self) -> int:
        if not self._has_chunks():
            return 0
        with self.conn.transaction():
            return int(self.conn.execute(f"SELECT count(*) FROM {self._t('chunks')}")
                       .fetchone()[0])

    def size_bytes(self) -> int:
        """Tables and their indexes (pg_total_relation_size), as stored by the server."""
        names = [self._t(n) for n in ("meta", "files", "chunks")]
        with self.conn.transaction():
            return int(self.conn.execute(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "WHERE c.relname = ANY(%s) AND c.relkind = 'r'", (names,)).fetchone()[0])

    def _has_chunks(self) -> bool:
        return self.conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                                 (self._t("chunks"),)).fetchone()[0]

    def close(self) -> None:
        self.conn.close()
