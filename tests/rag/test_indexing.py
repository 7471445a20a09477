"""Indexing is incremental and safe: unchanged files embed nothing, changes and deletions
are followed, a kill -9 leaves no half-written file and the next run finishes the job,
and two indexers on one store do not interleave."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rag_helpers import HashEmbedder

from parrot.errors import ParrotError
from parrot.rag.chunking import ChunkConfig
from parrot.rag.indexing import index
from parrot.rag.sqlite_store import SqliteStore

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"


def _write_docs(folder: Path, n: int, paragraphs: int = 6) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        text = "\n\n".join(f"Document {i} paragraph {p} talks about topic{i} and item{p}. "
                           "It has a second sentence with more words in it." for p in range(paragraphs))
        (folder / f"doc{i:02d}.md").write_text(text)


def _run(folder, store, embedder, **kw):
    return index([folder], store, embedder, chunking=ChunkConfig(40, 8), show_progress=False, **kw)


def _contents(store: SqliteStore) -> set:
    return set(store.conn.execute("SELECT path, start_char, end_char, text FROM chunks").fetchall())


def _consistent(store: SqliteStore) -> None:
    """Every recorded file has all its chunks, every chunk a vector, the FTS index agrees."""
    conn = store.conn
    for path, n in conn.execute("SELECT path, chunks FROM files").fetchall():
        assert conn.execute("SELECT count(*) FROM chunks WHERE path = ?", (path,)).fetchall()[0][0] == n
    assert not conn.execute("SELECT count(*) FROM chunks WHERE path NOT IN "
                            "(SELECT path FROM files)").fetchall()[0][0]
    vectors = conn.execute("SELECT count(*) FROM vectors").fetchall()[0][0]
    assert vectors == store.count()
    conn.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('integrity-check')")


def test_reindexing_an_unchanged_folder_embeds_nothing(tmp_path):
    _write_docs(tmp_path / "docs", 5)
    store, embedder = SqliteStore(tmp_path / "s.db"), HashEmbedder()
    first = _run(tmp_path / "docs", store, embedder)
    assert first.indexed == 5 and first.chunks == store.count() > 5
    embedder.calls = embedder.texts = 0
    second = _run(tmp_path / "docs", store, embedder)
    assert (second.unchanged, second.indexed, second.chunks, embedder.texts) == (5, 0, 0, 0)


def test_changed_new_and_deleted_files_are_followed(tmp_path):
    docs = tmp_path / "docs"
    _write_docs(docs, 4)
    store, embedder = SqliteStore(tmp_path / "s.db"), HashEmbedder()
    _run(docs, store, embedder)
    (docs / "doc01.md").write_text("Completely new text about zebras.")
    (docs / "doc03.md").unlink()
    (docs / "extra.txt").write_text("A new file about giraffes.")
    embedder.texts = 0
    report = _run(docs, store, embedder)
    assert (report.indexed, report.unchanged, report.removed, embedder.texts) == (2, 2, 1, 2)
    assert sorted(Path(p).name for p in store.files()) == ["doc00.md", "doc01.md", "doc02.md",
                                                           "extra.txt"]
    fresh = SqliteStore(tmp_path / "fresh.db")
    _run(docs, fresh, HashEmbedder())
    assert _contents(store) == _contents(fresh)
    _consistent(store)


def test_indexing_one_folder_leaves_another_folders_files_alone(tmp_path):
    _write_docs(tmp_path / "a", 2)
    _write_docs(tmp_path / "b", 3)
    store = SqliteStore(tmp_path / "s.db")
    _run(tmp_path / "a", store, HashEmbedder())
    _run(tmp_path / "b", store, HashEmbedder())
    assert len(store.files()) == 5


def test_an_empty_folder_and_an_oversized_chunk_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    store = SqliteStore(tmp_path / "s.db")
    with pytest.raises(ParrotError, match="No documents to index"):
        _run(tmp_path / "empty", store, HashEmbedder())
    _write_docs(tmp_path / "docs", 1)
    with pytest.raises(ParrotError, match="lower --chunk-tokens"):
        index([tmp_path / "docs"], store, HashEmbedder(max_length=20),
              chunking=ChunkConfig(40, 8), show_progress=False)


def test_unreadable_files_are_skipped_and_the_run_goes_on(tmp_path):
    _write_docs(tmp_path / "docs", 2)
    (tmp_path / "docs" / "blob.txt").write_bytes(b"\x00\x01binary")
    warnings = []
    report = index([tmp_path / "docs"], SqliteStore(tmp_path / "s.db"), HashEmbedder(),
                   show_progress=False, warn=warnings.append)
    assert (report.indexed, report.skipped) == (2, 1)
    assert len(warnings) == 1 and "blob.txt" in warnings[0]


_SLOW_INDEXER = """
import sys
sys.path[:0] = [{src!r}, {here!r}]
from rag_helpers import HashEmbedder
from parrot.rag.chunking import ChunkConfig
from parrot.rag.indexing import index
from parrot.rag.sqlite_store import SqliteStore
index([{docs!r}], SqliteStore({db!r}), HashEmbedder(delay={delay}), chunking=ChunkConfig(40, 8),
      batch_chunks=4, show_progress=False)
print("done", flush=True)
"""


def _start_slow_indexer(docs: Path, db: Path, delay: float) -> subprocess.Popen:
    code = _SLOW_INDEXER.format(src=str(SRC), here=str(HERE), docs=str(docs), db=str(db),
                                delay=delay)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_files(db: Path, at_least: int, proc: subprocess.Popen, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        if db.exists():
            store = SqliteStore(db)
            n = len(store.files())
            store.close()
            if n >= at_least:
                return n
        time.sleep(0.05)
    raise AssertionError("the indexer wrote nothing in time")


@pytest.mark.slow
def test_kill_9_mid_index_leaves_a_consistent_store_and_the_rerun_finishes(tmp_path):
    docs, db = tmp_path / "docs", tmp_path / "s.db"
    _write_docs(docs, 30)
    proc = _start_slow_indexer(docs, db, delay=0.15)
    _wait_for_files(db, 3, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = SqliteStore(db)
    done = len(store.files())
    assert 3 <= done < 30
    _consistent(store)
    report = _run(docs, store, HashEmbedder())
    assert report.unchanged == done and report.indexed == 30 - done
    fresh = SqliteStore(tmp_path / "fresh.db")
    _run(docs, fresh, HashEmbedder())
    assert _contents(store) == _contents(fresh)
    _consistent(store)


@pytest.mark.slow
def test_two_indexers_on_one_sqlite_store_one_fails_clearly_or_waits(tmp_path):
    docs, db = tmp_path / "docs", tmp_path / "s.db"
    _write_docs(docs, 12)
    proc = _start_slow_indexer(docs, db, delay=0.1)
    _wait_for_files(db, 1, proc)
    with pytest.raises(ParrotError, match="Another indexer is writing to"):
        _run(docs, SqliteStore(db), HashEmbedder())
    embedder = HashEmbedder()
    report = _run(docs, SqliteStore(db), embedder, wait_s=120)  # queues behind the first
    assert proc.wait(timeout=60) == 0 and "done" in proc.stdout.read()
    assert (report.unchanged, embedder.texts) == (12, 0)
    _consistent(SqliteStore(db))
