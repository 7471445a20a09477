"""Byte-level byte-pair encoding: the readable algorithm.

Training starts from the 256 single bytes and repeatedly fuses the most frequent adjacent
pair of tokens into a new token; the ordered list of fusions is the tokenizer. Encoding
replays the fusions: in each chunk, merge the adjacent pair whose fusion was learned
earliest (lowest rank), until no learned pair is left.

Ids 0..255 stand for the single bytes and id 256 + k for the k-th merge.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from itertools import pairwise

from parrot.errors import ParrotError
from parrot.tokenizer.pretokenize import compile_pattern

Pair = tuple[int, int]


def get_pair_counts(ids: list[int], counts: dict[Pair, int] | None = None) -> dict[Pair, int]:
    """Count adjacent pairs, adding to `counts` if given.

    >>> get_pair_counts([1, 2, 3, 1, 2])
    {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    """
    counts = {} if counts is None else counts
    for pair in pairwise(ids):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def merge(ids: list[int], pair: Pair, new_id: int) -> list[int]:
    """Replace every non-overlapping occurrence of `pair`, scanning left to right.

    >>> merge([1, 2, 3, 1, 2], (1, 2), 4)
    [4, 3, 4]
    >>> merge([7, 7, 7], (7, 7), 8)
    [8, 7]
    """
    first, second = pair
    out = []
    i, n = 0, len(ids)
    while i < n:
        if ids[i] == first and i + 1 < n and ids[i + 1] == second:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def count_chunks(texts: Iterable[str], pattern: str) -> Counter[bytes]:
    """How often each pre-token chunk occurs (as UTF-8 bytes) across `texts`."""
    split = compile_pattern(pattern).findall
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(split(text))
    return Counter({chunk.encode("utf-8"): n for chunk, n in counts.items()})


def train_merges(
    chunk_counts: dict[bytes, int],
    num_merges: int,
    on_merge: Callable[[int], None] | None = None,
) -> list[Pair]:
    """Learn up to `num_merges` merges from chunk frequencies; returns the pairs in order.

    Each step takes the pair with the highest count, summed over chunks weighted by their
    frequency; ties go to the pair whose (left bytes, right bytes) sort first, so the
    result is deterministic. A pair whose fusion equals an existing token is skipped: one
    token, one recipe, which keeps "merge rank" and "rank of the merged bytes" the same
    order (the fast encoder relies on that). `on_merge(k)` is called after merge k.

    Instead of recounting all pairs per step, counts are updated only in the chunks that
    contain the chosen pair (an index pair → chunks), and a max-heap with lazy deletion
    finds the best pair: counts of old pairs only fall, so a popped entry whose stored
    count is stale is pushed back with its true count.
    """
    words = [list(chunk) for chunk in chunk_counts]
    freqs = list(chunk_counts.values())
    token_bytes = [bytes([i]) for i in range(256)]
    pair_counts, where = _index_pairs(words, freqs)
    heap = [(-n, token_bytes[a], token_bytes[b], a, b) for (a, b), n in pair_counts.items()]
    heapq.heapify(heap)
    known = set(token_bytes)
    merges: list[Pair] = []
    while len(merges) < num_merges and heap:
        neg_count, left, right, a, b = heapq.heappop(heap)
        count = pair_counts.get((a, b), 0)
        if count <= 0 or left + right in known:
            continue
        if count != -neg_count:  # stale entry: re-queue with the true count
            heapq.heappush(heap, (-count, left, right, a, b))
            continue
        new_id = len(token_bytes)
        token_bytes.append(left + right)
        known.add(left + right)
        merges.append((a, b))
        for pair in _apply_merge((a, b), new_id, words, freqs, pair_counts, where):
            heapq.heappush(heap, (-pair_counts[pair], token_bytes[pair[0]], token_bytes[pair[1]],
                                  *pair))
        if on_merge is not None:
            on_merge(len(merges))
    return merges


def _index_pairs(
    words: list[list[int]], freqs: list[int]
) -> tuple[dict[Pair, int], dict[Pair, set[int]]]:
    """Weighted pair counts over all chunks, and for each pair the chunks that contain it."""
    pair_counts: dict[Pair, int] = defaultdict(int)
    where: dict[Pair, set[int]] = defaultdict(set)
    for index, (word, freq) in enumerate(zip(words, freqs, strict=True)):
        for pair in pairwise(word):
            pair_counts[pair] += freq
            where[pair].add(index)
    return pair_counts, where


def _apply_merge(
    pair: Pair,
    new_id: int,
    words: list[list[int]],
    freqs: list[int],
    pair_counts: dict[Pair, int],
    where: dict[Pair, set[int]],
) -> set[Pair]:
    """Merge `pair` in every chunk holding it, updating counts; returns the new pairs.

    `where` may list chunks that no longer hold a pair (entries are never removed, which
    is cheaper); such chunks are skipped because merging changes nothing.
    """
    fresh: set[Pair] = set()
    for index in where.pop(pair):
        word = words[index]
        new = merge(word, pair, new_id)
        if len(new) == len(word):
            continue
        freq = freqs[index]
        for old_pair in pairwise(word):
            pair_counts[old_pair] -= freq
        for new_pair in pairwise(new):
            pair_counts[new_pair] += freq
            if new_pair[0] == new_id or new_pair[1] == new_id:
                where[new_pair].add(index)
                fresh.add(new_pair)
        words[index] = new
    pair_counts.pop(pair, None)
    return fresh


def merge_ranks(merges: Sequence[Pair], tokens: Sequence[str] | Sequence[bytes],
                id_of: dict) -> dict[Pair, tuple[int, int]]:
    """Pair → (rank, merged id), the first listing of a pair counting; ParrotError when a
    merge makes a token (`tokens[a] + tokens[b]`) that `id_of` does not hold."""
    ranks: dict[Pair, tuple[int, int]] = {}
    for rank, (a, b) in enumerate(merges):
        merged = id_of.get(tokens[a] + tokens[b])
        if merged is None:
            raise ParrotError(f"merge {rank} ({tokens[a]!r} + {tokens[b]!r}) makes a token "
                              "that is not in the vocabulary.")
        ranks.setdefault((a, b), (rank, merged))
    return ranks


def encode_chunk(ids: list[int], ranks: dict[Pair, tuple[int, int]]) -> list[int]:
    """The reference encoder for one chunk: merge the lowest-rank adjacent pair first.

    `ranks` maps a pair to (merge rank, merged id). Returns the token ids.

    >>> encode_chunk([97, 97, 97, 98], {(97, 97): (0, 256), (256, 97): (1, 257)})
    [257, 98]
    """
    ids = list(ids)
    while len(ids) >= 2:
        best = min(pairwise(ids), key=lambda p: ranks.get(p, _NEVER)[0])
        if best not in ranks:
            break
        ids = merge(ids, best, ranks[best][1])
    return ids


_NEVER = (float("inf"), -1)
