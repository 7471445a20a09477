"""Open a store from what a user types: a PostgreSQL DSN or a SQLite file path."""

from __future__ import annotations

from pathlib import Path

from parrot.errors import ParrotError
from parrot.rag.store import Store


def is_postgres(spec: str) -> bool:
    return spec.startswith(("postgresql://", "postgres://")) or "dbname=" in spec


def open_store(spec: str | Path, *, create: bool = True, exact: bool = False) -> Store:
    """The store at `spec`: a PostgreSQL DSN (postgresql://...) or a SQLite file path.
    `create` False refuses a SQLite file that does not exist yet (search, ask, eval)."""
    text = str(spec)
    if is_postgres(text):
        from parrot.rag.pg_store import PgStore

        return PgStore(text, exact=exact)
    from parrot.rag.sqlite_store import SqliteStore

    path = Path(text).expanduser()
    if not create and not path.is_file():
        raise ParrotError(f"There is no store at {path}; build one with "
                          f"`parrot rag index FOLDER --store {text}`.")
    return SqliteStore(path)
