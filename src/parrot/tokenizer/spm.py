"""SentencePiece-style BPE (Gemma, Llama 2): scored pieces, "▁" for spaces, byte fallback.

The vocabulary is a list of *pieces*: text in which a space is written "▁" (U+2581). There
is no pre-tokenizer splitting words apart; encoding one text goes:

1. Cut out the pieces that are matched whole: user-defined pieces (Gemma: runs of
   newlines, spaces or tabs, HTML tags) always, special tokens only where the caller allows.
2. In each stretch of text between them, optionally put a space in front (the "dummy
   prefix"), then write every space as "▁".
3. Start from one symbol per character and repeatedly fuse the best adjacent pair:
   - score rule (llama.cpp on GGUF files): the pair whose fused text is a piece with the
     highest score;
   - rank rule (a Hugging Face `tokenizer.json`): the pair listed earliest among the merges.
   Ties go to the leftmost pair.
4. A symbol left over that is no piece becomes its UTF-8 bytes, each the piece "<0xXX>".

For speed, step 3 runs word by word (a word starts at "▁") when no piece could fuse across
that cut (`split_words`), and remembers the ids of each word it has seen.

Decoding: a piece stands for its text with "▁" turned back into a space; "<0xXX>" for
that one byte.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import regex

from parrot.errors import ParrotError
from parrot.tokenizer.bpe import merge_ranks
from parrot.tokenizer.fast import special_splitter

SPACE_PIECE = "▁"  # U+2581 LOWER ONE EIGHTH BLOCK stands for " " inside pieces
_BYTE_PIECE = regex.compile(r"<0x([0-9A-F]{2})>")


@dataclass(frozen=True)
class SentencePieceParts:
    """Everything a SentencePiece-style tokenizer is made of, independent of the file format.

    `merges` selects the rule: None fuses by piece score (llama.cpp), a list of id pairs in
    rank order fuses by rank (Hugging Face). `user_defined` and `special_tokens` map the
    text to match in the raw input (spaces as " ") to the id.
    """

    pieces: list[str]  # id → piece as stored ("▁the", "<0x0A>", "<bos>")
    scores: list[float]  # id → score; the score rule fuses into higher scores first
    special_tokens: dict[str, int] = field(default_factory=dict)
    user_defined: dict[str, int] = field(default_factory=dict)
    merges: list[tuple[int, int]] | None = None
    add_dummy_prefix: bool = False
    unk_id: int | None = None
    ignore_merges: bool = False  # rank rule: a stretch that is itself a piece stays whole
    # Hugging Face's added tokens with `normalized: true`: matched in the normalized text.
    normalized_user: dict[str, int] = field(default_factory=dict)

    pattern = ""  # no pre-tokenizer split (the facade reports it like a BPE pattern)

    @cached_property
    def token_bytes(self) -> list[bytes]:
        """id → the bytes the piece stands for."""
        return [piece_bytes(p) for p in self.pieces]


def piece_bytes(piece: str) -> bytes:
    """The bytes of a piece: "<0xXX>" is one byte, otherwise "▁" reads as a space.

    >>> piece_bytes("▁the"), piece_bytes("<0x0A>")
    (b' the', b'\\n')
    """
    byte = _BYTE_PIECE.fullmatch(piece)
    if byte:
        return bytes([int(byte.group(1), 16)])
    return piece.replace(SPACE_PIECE, " ").encode("utf-8")


def byte_piece_ids(pieces: Sequence[str]) -> tuple[int, ...]:
    """Byte value → id of its "<0xXX>" piece (-1 where the vocabulary has none)."""
    ids = [-1] * 256
    for i, piece in enumerate(pieces):
        byte = _BYTE_PIECE.fullmatch(piece)
        if byte:
            ids[int(byte.group(1), 16)] = i
    return tuple(ids)


# --- step 1: whole pieces ---------------------------------------------------------------
def split_longest_first(text: str, whole: Sequence[tuple[str, int]]) -> list[str | int]:
    """Cut `whole` pieces (text, id) out of `text`, longest piece first (llama.cpp's order).

    Each piece in turn is cut out of every remaining stretch of text, leftmost occurrence
    first; a longer piece therefore wins over a shorter one that starts earlier. Returns
    stretches (str) and ids (int) in order.

    >>> split_longest_first("a\\n\\nb\\nc", [("\\n\\n", 108), ("\\n", 107)])
    ['a', 108, 'b', 107, 'c']
    """
    parts: list[str | int] = [text] if text else []
    for piece, piece_id in sorted(whole, key=lambda w: (-len(w[0]), w[1])):
        if not piece or piece not in text:  # checked on the whole text: most never occur
            continue
        cut: list[str | int] = []
        for part in parts:
            if isinstance(part, int) or piece not in part:
                cut.append(part)
                continue
            for k, stretch in enumerate(part.split(piece)):
                if k:
                    cut.append(piece_id)
                if stretch:
                    cut.append(stretch)
        parts = cut
    return parts


def split_leftmost_longest(text: str, whole: dict[str, int]) -> list[str | int]:
    """Cut `whole` pieces out of `text`, scanning left to right and taking the longest piece
    that starts at each point (Hugging Face's rule for added tokens).

    >>> split_leftmost_longest("<a><ab>", {"<a>": 1, "<ab>": 2, "a><": 3})
    [1, 2]
    """
    splitter = special_splitter(frozenset(p for p in whole if p))
    if splitter is None:
        return [text] if text else []
    parts: list[str | int] = []
    for k, part in enumerate(splitter.split(text)):
        if k % 2:
            parts.append(whole[part])
        elif part:
            parts.append(part)
    return parts


def normalize(stretch: str, dummy_prefix: bool) -> str:
    """Step 2: an optional leading space, then every space written "▁".

    >>> normalize("a b", True)
    '▁a▁b'
    """
    return (" " + stretch if dummy_prefix else stretch).replace(" ", SPACE_PIECE)


# --- step 3: fusing (word by word where no piece can cross) -----------------------------------------------------------------------
def word_cut_blockers(pieces: Sequence[str], limit: int = 256
                      ) -> list[tuple[str, int]] | None:
    """The pieces that hold "▁" after their first character, with each such index.

    Only these pieces can cross a cut made before a "▁", so with none of them in the way
    a stretch can be fused word by word with the very same result (Gemma has one: ">▁</").
    None when there are more than `limit` (cutting would cost more than it saves).
    """
    found = [(p, j) for p in pieces for j in range(1, len(p)) if p[j] == SPACE_PIECE]
    return found if len(found) <= limit else None


def split_words(text: str, blockers: Sequence[tuple[str, int]]) -> list[str]:
    """Cut `text` before every "▁" (but the first character) that no blocker covers.

    >>> split_words("▁a▁b>▁</c", [(">▁</", 1)])
    ['▁a', '▁b>▁</c']
    """
    cuts = [0]
    i = text.find(SPACE_PIECE, 1)
    while i > 0:
        if not any(i >= j and text.startswith(p, i - j) for p, j in blockers):
            cuts.append(i)
        i = text.find(SPACE_PIECE, i + 1)
    cuts.append(len(text))
    return [text[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]


def score_places(pieces: Sequence[str], scores: Sequence[float]) -> dict[str, int]:
    """Piece → its place when scores are sorted best first (equal scores share a place).

    >>> score_places(["a", "b", "c"], [-2.0, 0.0, -2.0])
    {'a': 1, 'b': 0, 'c': 1}
    """
    place = {score: k for k, score in enumerate(sorted(set(scores), reverse=True))}
    return {piece: place[score] for piece, score in zip(pieces, scores, strict=True)}


def fuse_by_score(text: str, place: dict[str, int]) -> list[str]:
    """llama.cpp's SentencePiece BPE on one stretch: the symbols left when no fusion remains.

    Start with one symbol per character. While some adjacent pair's concatenation is a
    piece, fuse the pair whose piece has the highest score (ties: the leftmost pair).
    `place` ranks the pieces by score (`score_places`: 0 is the best).

    Symbols form a linked list and a min-heap holds candidate pairs. A heap entry is the
    single integer (place, left symbol, pair length) in mixed radix n + 1, which orders
    like the tuple but compares faster. An entry is stale (skipped) when its left symbol
    was fused away or the pair starting there no longer has the pushed length.

    >>> fuse_by_score("aab", {"a": 0, "b": 0, "ab": 1, "aa": 2})
    ['a', 'ab']
    """
    n = len(text)
    radix = n + 1
    start, end = list(range(n)), list(range(1, n + 1))
    prev, nxt = list(range(-1, n - 1)), [*range(1, n), -1]
    heap: list[int] = []
    get, push = place.get, heapq.heappush

    for left in range(n - 1):
        found = get(text[left : left + 2])
        if found is not None:
            heap.append((found * radix + left) * radix + 2)
    heapq.heapify(heap)
    while heap:
        key = heapq.heappop(heap)
        size, left = key % radix, key // radix % radix
        right = nxt[left] if start[left] >= 0 else -1
        if right < 0 or end[right] - start[left] != size:
            continue  # stale: a side was fused into something else since the push
        end[left] = end[right]
        start[right] = -1  # fused away
        nxt[left] = after = nxt[right]
        if after >= 0:
            prev[after] = left
            found = get(text[start[left] : end[after]])
            if found is not None:
                push(heap, (found * radix + left) * radix + end[after] - start[left])
        before = prev[left]
        if before >= 0:
            found = get(text[start[before] : end[left]])
            if found is not None:
                push(heap, (found * radix + before) * radix + end[left] - start[before])
    return [text[start[i] : end[i]] for i in range(n) if start[i] >= 0]


def fuse_by_rank(ids: list[int], ranks: dict[tuple[int, int], tuple[int, int]]) -> list[int]:
    """Hugging Face BPE on one word: fuse the adjacent pair with the lowest merge rank,
    leftmost first on ties, until no listed pair is left. `ranks`: pair → (rank, fused id).

    >>> fuse_by_rank([1, 1, 2], {(1, 1): (0, 5), (1, 2): (1, 6)})
    [5, 2]
    """
    n = len(ids)
    radix = n + 1  # heap entries: the integer (rank, left symbol) in mixed radix
    ids, alive = list(ids), [True] * n
    prev, nxt = list(range(-1, n - 1)), [*range(1, n), -1]
    heap: list[int] = []

    def push(left: int) -> None:
        if left >= 0 and nxt[left] >= 0:
            found = ranks.get((ids[left], ids[nxt[left]]))
            if found is not None:
                heapq.heappush(heap, found[0] * radix + left)

    for i in range(n - 1):
        push(i)
    while heap:
        rank, left = divmod(heapq.heappop(heap), radix)
        right = nxt[left] if alive[left] else -1
        found = ranks.get((ids[left], ids[right])) if right >= 0 else None
        if found is None or found[0] != rank:
            continue  # stale: the pair at `left` changed since this entry was pushed
        ids[left], alive[right] = found[1], False
        nxt[left] = nxt[right]
        if nxt[left] >= 0:
            prev[nxt[left]] = left
        push(prev[left])
        push(left)
    return [ids[i] for i in range(n) if alive[i]]


# --- the encoder ----------------------------------------------------------------------------
class SentencePieceEncoder:
    """Text → ids for `SentencePieceParts`, word by word where that is exact, with a memo
    of word → ids."""

    def __init__(self, parts: SentencePieceParts, max_entries: int = 1 << 16) -> None:
        self.parts = parts
        self._piece_id = {p: i for i, p in enumerate(parts.pieces)}  # a later duplicate wins
        self._place = score_places(parts.pieces, parts.scores) if parts.merges is None else {}
        self._byte_ids = byte_piece_ids(parts.pieces)
        self._ranks = (None if parts.merges is None
                       else merge_ranks(parts.merges, parts.pieces, self._piece_id))
        self._whole = list(parts.user_defined.items())
        self._spanning = word_cut_blockers(parts.pieces)
        if self._spanning is not None and not self._can_cut_words(self._spanning):
            self._spanning = None
        self._cache: dict[str, list[int]] = {}
        self._max_entries = max_entries

    def encode(self, text: str, allowed: frozenset[str]) -> list[int]:
        """Cut out whole pieces (user-defined, and the allowed specials), encode the rest."""
        whole = self._whole + [(s, self.parts.special_tokens[s]) for s in sorted(allowed)]
        if self._ranks is None:
            parts = split_longest_first(text, whole)
        else:
            parts = split_leftmost_longest(text, dict(whole))
        ids: list[int] = []
        for part in parts:
            if isinstance(part, int):
                ids.append(part)
            else:
                ids.extend(self.encode_stretch(part))
        return ids

    def encode_batch(self, texts: list[str], allowed: frozenset[str]) -> list[list[int]]:
        return [self.encode(text, allowed) for text in texts]

    def encode_stretch(self, stretch: str) -> list[int]:
        """One stretch between whole pieces: normalize it, cut out the pieces matched after
        normalization (if any), then fuse word by word (`split_words`)."""
        text = normalize(stretch, self.parts.add_dummy_prefix)
        after = self.parts.normalized_user
        ids: list[int] = []
        for part in split_leftmost_longest(text, after) if after else [text]:
            if isinstance(part, int):
                ids.append(part)
                continue
            for word in [part] if self._spanning is None else split_words(part, self._spanning):
                ids.extend(self._encode_word(word))
        return ids

    def _encode_word(self, word: str) -> list[int]:
        found = self._cache.get(word)
        if found is None:
            if self._ranks is None:
                found = self._symbols_to_ids(fuse_by_score(word, self._place))
            else:
                found = self._encode_ranked(word)
            if len(self._cache) >= self._max_entries:
                self._cache.clear()
            self._cache[word] = found
        return found

    def _can_cut_words(self, blockers: list[tuple[str, int]]) -> bool:
        """Whether cutting before "▁" is exact: "▁" must be a piece, no whole stretch may
        stay one piece (`ignore_merges`), and under the rank rule, where unknown characters
        turn into byte or unknown pieces before fusing, no blocker may hold such a piece
        (its text would then differ from the input text it covers)."""
        if self.parts.ignore_merges or SPACE_PIECE not in self._piece_id:
            return False
        unk = self.parts.pieces[self.parts.unk_id] if self.parts.unk_id is not None else None
        return self._ranks is None or not any(
            _BYTE_PIECE.search(p) or (unk and unk in p) for p, _ in blockers)

    def _symbols_to_ids(self, symbols: list[str]) -> list[int]:
        ids: list[int] = []
        for symbol in symbols:
            found = self._piece_id.get(symbol)
            ids.extend([found] if found is not None else self._fallback(symbol))
        return ids

    def _encode_ranked(self, text: str) -> list[int]:
        """Hugging Face's order: unknown characters become bytes before any fusing."""
        assert self._ranks is not None
        if self.parts.ignore_merges and text in self._piece_id:
            return [self._piece_id[text]]
        return fuse_by_rank(self._symbols_to_ids(list(text)), self._ranks)

    def _fallback(self, symbol: str) -> list[int]:
        """A symbol that is no piece: one "<0xXX>" piece per UTF-8 byte, else the unknown id."""
        ids = [self._byte_ids[b] for b in symbol.encode("utf-8")]
        if -1 not in ids:
            return ids
        if self.parts.unk_id is not None:
            return [self.parts.unk_id]
        raise ParrotError(f"this tokenizer has no piece for {symbol!r} and no byte pieces to "
                          "spell it with, so it cannot encode this text.")
