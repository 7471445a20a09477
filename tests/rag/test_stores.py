"""The three stores behind one interface: same top-k ids on the same vectors, BM25 equal
to its formula, filters, atomic batches, and the embedding-model record."""

import numpy as np
import pytest
from rag_helpers import unit_vectors

from parrot.errors import ParrotError
from parrot.rag.sqlite_store import SqliteStore
from parrot.rag.store import (
    FileChunks,
    Filters,
    NumpyStore,
    bm25_scores,
    check_model,
    query_words_all,
)

DIM = 32


def _files(n_files: int, per_file: int, kinds=("text", "markdown", "python")):
    files = []
    for f in range(n_files):
        chunks = tuple((f"file{f} part{c} common words", c * 10, c * 10 + 9)
                       for c in range(per_file))
        files.append(FileChunks(f"/docs/{'ab'[f % 2]}/f{f}.txt", f"h{f}", kinds[f % 3], chunks))
    return files


def _fill(store, files, vectors):
    check_model(store, "test-model", DIM)
    store.replace_files(files[:5], vectors[:5 * 8])
    store.replace_files(files[5:], vectors[5 * 8:])


SLOW = pytest.mark.slow  # the PostgreSQL fixture takes ~4-7 s to start on this machine
KINDS = ["sqlite", pytest.param("pg", marks=SLOW)]


def _open(kind, tmp_path, request):
    if kind == "numpy":
        return NumpyStore()
    if kind == "sqlite":
        return SqliteStore(tmp_path / "s.db")
    return request.getfixturevalue("pg_store")


@pytest.fixture(params=KINDS)
def stores(request, tmp_path):
    """The reference NumPy store and one real store, filled with the same vectors."""
    files, vectors = _files(20, 8), unit_vectors(160, DIM)
    out = {"numpy": NumpyStore(), "real": _open(request.param, tmp_path, request)}
    for store in out.values():
        _fill(store, files, vectors)
    return out


@pytest.fixture(params=KINDS)
def real_store(request, tmp_path):
    return _open(request.param, tmp_path, request)


def test_all_stores_return_the_same_top_k_ids_on_the_same_vectors(stores):
    queries = unit_vectors(25, DIM, seed=1)
    for filters in (Filters(), Filters(path_prefix="/docs/a/"), Filters(kinds=("markdown",))):
        for q in queries:
            results = {name: s.vector_search(q, 10, filters) for name, s in stores.items()}
            ids = {name: [i for i, _ in r] for name, r in results.items()}
            assert ids["real"] == ids["numpy"], filters
            np.testing.assert_allclose([s for _, s in results["real"]],
                                       [s for _, s in results["numpy"]], atol=1e-5)


def test_filters_keep_only_matching_paths_and_kinds(stores):
    q = unit_vectors(1, DIM, seed=2)[0]
    for store in stores.values():
        ids = [i for i, _ in store.vector_search(q, 200, Filters("/docs/b/", ("python",)))]
        chunks = store.chunks(ids)
        assert chunks and all(c.path.startswith("/docs/b/") and c.kind == "python" for c in chunks)
        assert len(chunks) == 8 * sum(1 for f in range(20) if f % 2 == 1 and f % 3 == 2)


def test_fts5_bm25_equals_the_formula():
    docs = ["alpha beta beta gamma", "beta delta", "alpha alpha alpha kappa lambda omega",
            "gamma delta kappa", "omega"] * 3
    store = SqliteStore(":memory:")
    check_model(store, "m", 4)
    store.replace_files([FileChunks("/x.txt", "h", "text",
                                    tuple((d, 0, len(d)) for d in docs))],
                        unit_vectors(len(docs), 4))
    for query in ("alpha", "beta gamma", "kappa omega delta"):
        got = store.keyword_search(query, 50)
        expected = bm25_scores(query.split(), [query_words_all(d) for d in docs])
        assert sorted(i for i, _ in got) == [i + 1 for i in np.nonzero(expected)[0]]
        for chunk_id, score in got:
            assert score == pytest.approx(expected[chunk_id - 1], rel=1e-6)


def test_keyword_search_agrees_on_the_best_chunk_across_stores(stores):
    for store in stores.values():
        best = store.chunks([store.keyword_search("file7 part3", 1)[0][0]])[0]
        assert best.path.endswith("/f7.txt")


def test_a_failing_batch_leaves_the_store_as_it_was(real_store):
    for store in (real_store,):
        files, vectors = _files(4, 3), unit_vectors(12, DIM)
        _fill(store, files[:2], vectors[:6])
        before = (store.files(), store.count())
        bad = np.zeros((6, DIM + 1), np.float32)  # wrong dimension: the vector insert fails
        with pytest.raises(Exception):  # noqa: B017 (apsw and psycopg raise their own types)
            store.replace_files(files[2:], bad)
        assert (store.files(), store.count()) == before


@pytest.mark.parametrize("kind", ["numpy", *KINDS])
def test_replacing_a_file_drops_its_old_chunks_everywhere(kind, tmp_path, request):
    for store in (_open(kind, tmp_path, request),):
        _fill(store, _files(10, 8), unit_vectors(80, DIM))
        new = FileChunks("/docs/a/f0.txt", "h0-new", "text", (("fresh text zebra", 0, 16),))
        store.replace_files([new], unit_vectors(1, DIM, seed=9))
        assert store.files()["/docs/a/f0.txt"] == "h0-new" and store.count() == 73
        assert [c.text for c in store.chunks([i for i, _ in store.keyword_search("zebra", 5)])] \
            == ["fresh text zebra"]
        assert not store.keyword_search("file0 common", 100, Filters("/docs/a/f0.txt"))
        store.remove_files(["/docs/a/f0.txt"])
        assert store.count() == 72 and "/docs/a/f0.txt" not in store.files()


def test_a_store_refuses_another_embedding_model(real_store):
    for store in (real_store,):
        check_model(store, "minilm-l6", 384)
        check_model(store, "minilm-l6", 384)  # the same one is fine
        with pytest.raises(ParrotError, match="indexed with the embedding model minilm-l6"):
            check_model(store, "other-encoder", 768)


def test_a_second_sqlite_writer_fails_clearly_and_waits_when_asked(tmp_path):
    first, second = SqliteStore(tmp_path / "d.db"), SqliteStore(tmp_path / "d.db")
    with first.writer():
        with pytest.raises(ParrotError, match="Another indexer is writing"):
            with second.writer(wait_s=0.2):
                pass
    with second.writer(wait_s=0.2):
        pass


@SLOW
def test_a_second_postgres_writer_fails_clearly(pg_dsn):
    from parrot.rag.pg_store import PgStore

    first, second = PgStore(pg_dsn, prefix="lock_t"), PgStore(pg_dsn, prefix="lock_t")
    with first.writer():
        with pytest.raises(ParrotError, match="Another indexer is writing"):
            with second.writer(wait_s=0.2):
                pass
    with second.writer():
        pass


def test_an_unreachable_postgres_is_one_clear_sentence():
    from parrot.rag.pg_store import PgStore

    with pytest.raises(ParrotError, match="Cannot reach PostgreSQL at postgresql://u:\\*\\*\\*@"):
        PgStore("postgresql://u:secret@127.0.0.1:9/db", connect_timeout=2)
