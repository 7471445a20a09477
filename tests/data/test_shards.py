import numpy as np

from parrot.data.shards import (
    build_shards,
    dtype_for_vocab,
    open_shard,
    split_chars,
    split_documents,
    write_shard,
)


def test_shard_dtype_follows_the_vocabulary_size():
    assert dtype_for_vocab(256) == np.uint16
    assert dtype_for_vocab(65536) == np.uint16
    assert dtype_for_vocab(65537) == np.uint32


def test_char_split_is_the_first_and_last_fraction():
    text = "".join(chr(97 + i % 26) for i in range(1000))
    train, val = split_chars([text], 0.1)
    assert train == [text[:900]] and val == [text[900:]]


def test_document_split_keeps_the_last_documents_for_validation():
    docs = [f"doc {i}" for i in range(20)]
    train, val = split_documents(docs, 0.1)
    assert train == docs[:18] and val == docs[18:]
    assert split_documents(["a", "b"], 0.01) == (["a"], ["b"])  # at least one of each


def test_shards_are_memory_mapped_and_round_trip(tmp_path):
    ids = np.arange(70000, dtype=np.uint32)
    write_shard(tmp_path / "x.npy", ids)
    loaded = open_shard(tmp_path / "x.npy")
    assert isinstance(loaded, np.memmap) and loaded.dtype == np.uint32
    np.testing.assert_array_equal(loaded, ids)


def test_build_shards_encodes_each_split_with_separators(tmp_path):
    encode = lambda s: list(s.encode())  # noqa: E731
    train, val = build_shards(["ab", "c"], ["de"], encode, 300, tmp_path, separator=299)
    assert train.dtype == np.uint16
    assert list(train) == [97, 98, 299, 99, 299] and list(val) == [100, 101, 299]
    assert (tmp_path / "train.npy").is_file() and (tmp_path / "val.npy").is_file()
