"""The readable BPE algorithm: pair counts, merge, training, the reference chunk encoder."""

import doctest
import random
from collections import Counter

from parrot.tokenizer import PATTERNS, Tokenizer, bpe, pretokenize
from parrot.tokenizer.bpe import count_chunks, encode_chunk, get_pair_counts, merge, train_merges


def test_get_pair_counts_counts_adjacent_pairs_and_accumulates():
    counts = get_pair_counts([1, 2, 3, 1, 2])
    assert counts == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert get_pair_counts([1, 2], counts)[(1, 2)] == 3


def test_merge_replaces_non_overlapping_pairs_left_to_right():
    assert merge([1, 2, 3, 1, 2], (1, 2), 9) == [9, 3, 9]
    assert merge([7, 7, 7], (7, 7), 8) == [8, 7]
    assert merge([7, 7, 7, 7], (7, 7), 8) == [8, 8]
    assert merge([1], (1, 2), 9) == [1]


def test_worked_example_aaabdaaabac():
    # Hand-computed: (a,a) has count 4 → 256; then (aa,a) and (a,b) tie at 2 and the
    # byte-wise smaller pair (a,b) wins → 257; then (aa,ab) with count 2 → 258 = "aaab".
    tok = Tokenizer.train(["aaabdaaabac"], vocab_size=259)
    assert tok.parts.merges == [(97, 97), (97, 98), (256, 257)]
    assert [tok.token_bytes(i) for i in (256, 257, 258)] == [b"aa", b"ab", b"aaab"]
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]


def _naive_train(chunks: Counter, num_merges: int) -> list[tuple[int, int]]:
    """Recount every pair after every merge: slow, obviously right."""
    words = {tuple(c): n for c, n in chunks.items()}
    token_bytes = [bytes([i]) for i in range(256)]
    merges = []
    for _ in range(num_merges):
        counts: dict = {}
        for word, n in words.items():
            for pair, k in get_pair_counts(list(word)).items():
                counts[pair] = counts.get(pair, 0) + k * n
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], token_bytes[p[0]], token_bytes[p[1]]))
        new_id = len(token_bytes)
        token_bytes.append(token_bytes[best[0]] + token_bytes[best[1]])
        merges.append(best)
        words = {tuple(merge(list(w), best, new_id)): n for w, n in words.items()}
    return merges


def test_incremental_training_equals_naive_recount(corpus):
    chunks = count_chunks(corpus[:20], PATTERNS["gpt2"])
    assert train_merges(chunks, 150) == _naive_train(chunks, 150)


def test_incremental_training_equals_naive_recount_on_repetitive_text():
    rng = random.Random(0)
    text = " ".join("".join(rng.choice("ab") for _ in range(rng.randint(1, 12))) for _ in range(500))
    chunks = count_chunks([text], PATTERNS["gpt2"])
    assert train_merges(chunks, 120) == _naive_train(chunks, 120)


def test_training_is_deterministic_and_independent_of_document_order(corpus):
    docs = corpus[:60]
    first = Tokenizer.train(docs, 600).parts.merges
    assert Tokenizer.train(docs, 600).parts.merges == first
    assert Tokenizer.train(list(reversed(docs)), 600).parts.merges == first


def test_training_stops_when_no_pairs_are_left():
    tok = Tokenizer.train(["ab ab"], vocab_size=1000)
    assert tok.vocab_size == 258  # "ab", then " ab"
    assert tok.encode("ab ab") == [256, 257]


def test_every_token_has_distinct_bytes(trained):
    specials = set(trained.special_tokens.values())
    normal = [trained.token_bytes(i) for i in range(trained.vocab_size) if i not in specials]
    assert len(set(normal)) == len(normal)


def test_reference_chunk_encoder_merges_lowest_rank_first():
    ranks = {(98, 99): (0, 256), (97, 98): (1, 257), (257, 99): (2, 258)}
    # (b,c) outranks (a,b), so "abc" becomes a + bc and (ab,c) never gets its chance.
    assert encode_chunk([97, 98, 99], ranks) == [97, 256]
    assert encode_chunk([97, 98, 100], ranks) == [257, 100]


def test_docstring_examples_hold():
    for module in (bpe, pretokenize):
        assert doctest.testmod(module).failed == 0
