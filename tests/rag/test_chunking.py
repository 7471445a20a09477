"""Chunking in embedding-model tokens: offsets exact, sizes bounded, overlap, boundaries."""

import pytest
from rag_helpers import WordTokenizer

from parrot.errors import ParrotError
from parrot.rag.chunking import ChunkConfig, chunk_text, segments

TOK = WordTokenizer()


def count(texts):
    return [len(TOK.encode(t)) for t in texts]


def _paragraphs(n: int, words: int) -> str:
    return "\n\n".join(" ".join(f"p{i}w{j}" for j in range(words)) + "." for i in range(n))


def test_every_chunk_is_the_exact_slice_of_its_offsets_and_fits():
    text = _paragraphs(12, 30) + "\n\n" + ("A long sentence goes on. " * 40)
    chunks = chunk_text(text, count, ChunkConfig(max_tokens=50, overlap=10))
    assert chunks
    for c in chunks:
        assert text[c.start:c.end] == c.text
        assert c.tokens == count([c.text])[0] <= 50
    assert chunks[0].start == 0 and chunks[-1].end == len(text.rstrip())


def test_chunks_end_on_paragraph_boundaries_when_paragraphs_fit():
    text = _paragraphs(6, 20)  # 21 tokens per paragraph: two per 50-token chunk
    chunks = chunk_text(text, count, ChunkConfig(max_tokens=50, overlap=0))
    assert [c.text.count("\n\n") for c in chunks] == [1, 1, 1]
    assert all(c.text.endswith(".") for c in chunks)


def test_overlap_repeats_the_last_segments_of_the_previous_chunk():
    text = "\n\n".join(f"Sentence number {i} here." for i in range(20))  # 5 tokens each
    chunks = chunk_text(text, count, ChunkConfig(max_tokens=20, overlap=5))
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert after.start < before.end  # they share text
        assert before.text.endswith(text[after.start:before.end])
    no_overlap = chunk_text(text, count, ChunkConfig(max_tokens=20, overlap=0))
    assert all(b.start >= a.end for a, b in zip(no_overlap, no_overlap[1:], strict=False))


def test_a_long_paragraph_splits_at_sentences_and_a_long_sentence_at_words():
    long_sentence = " ".join(f"w{i}" for i in range(100)) + "."
    text = "First short one. Second short one. " + long_sentence
    parts = segments(text, count, limit=20)
    pieces = [text[a:b] for a, b, _ in parts]
    assert pieces[:2] == ["First short one.", "Second short one."]
    assert all(n <= 20 for _, _, n in parts)
    assert " ".join(pieces[2:]) == long_sentence


def test_empty_text_has_no_chunks_and_bad_sizes_are_refused():
    assert chunk_text("  \n\n ", count) == []
    with pytest.raises(ParrotError, match="overlap"):
        ChunkConfig(max_tokens=16, overlap=16)
    with pytest.raises(ParrotError, match="at least 8"):
        ChunkConfig(max_tokens=4, overlap=0)
