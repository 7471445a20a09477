"""Retrieval modes over a real SQLite store: vector, keyword (BM25), hybrid (RRF)."""

from pathlib import Path

import pytest
from rag_helpers import HashEmbedder

from parrot.errors import ParrotError
from parrot.rag.chunking import ChunkConfig
from parrot.rag.indexing import index
from parrot.rag.retrieve import rrf_fuse, search
from parrot.rag.sqlite_store import SqliteStore
from parrot.rag.store import Filters

DOCS = {
    "logs.md": "Rotate the logs with logrotate every night.\n\nKeep seven days of logs.",
    "backup.txt": "Backups run at midnight and are copied to the NAS.",
    "code/tool.py": 'def rotate(path):\n    """Rotate one log file."""\n',
    "notes/cats.rst": "Cats sleep most of the day.\n\nThey like warm places.",
}


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    root = tmp_path_factory.mktemp("docs")
    for name, text in DOCS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    store, embedder = SqliteStore(root / "s.db"), HashEmbedder()
    index([root], store, embedder, chunking=ChunkConfig(16, 0), show_progress=False)
    return root, store, embedder


def test_rrf_fusion_worked_example():
    # 1: 1/62 + 1/61, 2: 1/63 + 1/62, 3: 1/61, 4: 1/63
    fused = rrf_fuse([[3, 1, 2], [1, 2, 4]])
    assert [i for i, _ in fused] == [1, 2, 3, 4]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61)


@pytest.mark.parametrize("mode", ["vector", "keyword", "bm25", "hybrid"])
def test_every_mode_ranks_the_passage_and_its_offsets_point_into_the_file(indexed, mode):
    root, store, embedder = indexed
    hits = search(store, embedder, "how often are the logs rotated with logrotate", 3, mode)
    assert hits[0].path.endswith("logs.md") and [h.rank for h in hits] == list(range(1, len(hits) + 1))
    for hit in hits:
        assert Path(hit.path).read_text()[hit.start:hit.end] == hit.text


def test_hybrid_is_the_rank_fusion_of_vector_and_keyword(indexed):
    _, store, embedder = indexed
    query = "rotate log file"
    vector = [h.id for h in search(store, embedder, query, 50, "vector")]
    keyword = [h.id for h in search(store, embedder, query, 50, "keyword")]
    hybrid = [h.id for h in search(store, embedder, query, 4, "hybrid")]
    assert hybrid == [i for i, _ in rrf_fuse([vector, keyword])][:4]


def test_filters_by_path_prefix_and_kind(indexed):
    root, store, embedder = indexed
    only_code = search(store, embedder, "rotate", 5, "hybrid", Filters(str(root / "code")))
    assert only_code and all("/code/" in h.path for h in only_code)
    rst = search(store, embedder, "rotate logs", 5, "vector", Filters(kinds=("rst",)))
    assert rst and all(h.kind == "rst" for h in rst)


def test_bad_k_mode_and_question_are_parrot_errors(indexed):
    _, store, embedder = indexed
    for k in (0, -3):
        with pytest.raises(ParrotError, match="k must be a positive"):
            search(store, embedder, "logs", k)
    with pytest.raises(ParrotError, match="Unknown retrieval mode"):
        search(store, embedder, "logs", 3, "fuzzy")
    with pytest.raises(ParrotError, match="more than the 128"):
        search(store, embedder, "word " * 200, 3)
    with pytest.raises(ParrotError, match="empty"):
        search(store, embedder, "   ", 3)
