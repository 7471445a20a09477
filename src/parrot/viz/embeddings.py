"""The geometry of the token embedding matrix: neighbours, analogies and a 2-D projection.

Words are looked up as single tokens. A word that the tokenizer splits is refused (the
error says how it splits): averaging its pieces would show a vector the model never uses.
The word is tried first with a leading space, the form a word takes inside running text
and the one byte-level BPE vocabularies usually store (" king" rather than "king"), then
as written (for punctuation, word pieces, or a word that only starts texts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure

from parrot.errors import ParrotError
from parrot.model import Transformer
from parrot.tokenizer import Tokenizer
from parrot.utils.text import visible_piece
from parrot.viz.figure import new_figure


@dataclass(frozen=True)
class Neighbour:
    id: int
    label: str
    similarity: float


def embedding_matrix(model: Transformer) -> torch.Tensor:
    """The token embedding table (vocab_size, d_model), as float32."""
    return model.tok_emb.weight.detach().float()


def single_token_id(tokenizer: Tokenizer, word: str) -> int:
    """The id of `word` as one token (tried with a leading space, then as written)."""
    if not word:
        raise ParrotError("An empty word has no embedding; give a word that is one token.")
    for form in (" " + word, word):
        ids = tokenizer.encode(form)
        if len(ids) == 1:
            return ids[0]
    split = [" | ".join(visible_piece(tokenizer.token_bytes(i)) for i in tokenizer.encode(form))
             for form in (word, " " + word)]
    raise ParrotError(f"{word!r} is not a single token (it splits into {split[0]}, and with a "
                      f"leading space into {split[1]}); pick a word the vocabulary holds whole.")


def cosine_scores(matrix: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """cos(E_i, v) = E_i . v / (|E_i| |v|) for every row i of E (zero rows score 0)."""
    norms = matrix.norm(dim=1) * vector.norm()
    return (matrix @ vector) / norms.clamp_min(1e-12)


def top_matches(scores: torch.Tensor, k: int, exclude: Sequence[int] = ()) -> list[int]:
    """The ids of the k highest scores, skipping `exclude`; ties go to the lower id."""
    scores = scores.clone()
    scores[list(exclude)] = float("-inf")
    order = torch.sort(scores, descending=True, stable=True).indices
    return [int(i) for i in order[:k]]


def nearest_neighbours(matrix: torch.Tensor, token: int, k: int = 10) -> list[tuple[int, float]]:
    """The k rows most cosine-similar to row `token` (itself excluded), best first."""
    scores = cosine_scores(matrix, matrix[token])
    return [(i, float(scores[i])) for i in top_matches(scores, k, [token])]


def analogy(matrix: torch.Tensor, a: int, b: int, c: int, k: int = 5) -> list[tuple[int, float]]:
    """a - b + c: the k rows closest (cosine) to E_a - E_b + E_c, the three inputs excluded
    (as in word2vec's evaluation; otherwise c itself usually wins). "woman - man + nephew"."""
    scores = cosine_scores(matrix, matrix[a] - matrix[b] + matrix[c])
    return [(i, float(scores[i])) for i in top_matches(scores, k, [a, b, c])]


def pca_2d(vectors: torch.Tensor) -> np.ndarray:
    """Project rows onto their first two principal components: (X - mean) V[:, :2], with
    V the right singular vectors of the centred X. Signs follow the SVD's choice."""
    x = vectors.double() - vectors.double().mean(dim=0)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    return (x @ vh[:2].T).numpy()


def default_words(tokenizer: Tokenizer, count: int = 30) -> list[int]:
    """Token ids worth plotting when none are named: learned tokens that are whole words
    (letters, optionally after one space), in id order."""
    chosen = []
    for token in range(256, tokenizer.vocab_size):
        text = tokenizer.token_bytes(token).decode("utf-8", errors="replace")
        if len(text.strip()) >= 3 and text.strip().isalpha() and text.lstrip(" ") == text.strip():
            chosen.append(token)
        if len(chosen) == count:
            break
    return chosen or list(range(min(count, tokenizer.vocab_size)))


@dataclass(frozen=True)
class EmbeddingView:
    """Chosen tokens, their 2-D projection, neighbours of each, and an optional analogy."""

    ids: list[int]
    labels: list[str]
    points: np.ndarray
    neighbours: dict[int, list[Neighbour]]
    analogy: tuple[str, list[Neighbour]] | None


def embedding_view(model: Transformer, tokenizer: Tokenizer, words: Sequence[str] = (),
                   analogy_words: Sequence[str] = (), k: int = 5) -> EmbeddingView:
    """Everything `embeddings_figure` draws, computed from the model's embedding matrix."""
    matrix = embedding_matrix(model)
    ids = [single_token_id(tokenizer, w) for w in words] or default_words(tokenizer)
    ids = list(dict.fromkeys(ids))
    label = lambda i: visible_piece(tokenizer.token_bytes(i))  # noqa: E731
    near = {i: [Neighbour(j, label(j), s) for j, s in nearest_neighbours(matrix, i, k)]
            for i in ids[:8]}
    found = None
    if analogy_words:
        if len(analogy_words) != 3:
            raise ParrotError("An analogy needs three words A B C (for A - B + C), "
                              f"got {len(analogy_words)}.")
        a, b, c = (single_token_id(tokenizer, w) for w in analogy_words)
        text = f"{label(a)} - {label(b)} + {label(c)}"
        found = (text, [Neighbour(j, label(j), s) for j, s in analogy(matrix, a, b, c, k)])
    points = pca_2d(matrix[ids]) if len(ids) >= 2 else np.zeros((len(ids), 2))
    return EmbeddingView(ids, [label(i) for i in ids], points, near, found)


def neighbour_lines(view: EmbeddingView) -> list[str]:
    """The neighbours as text, one line per word ("king → queen 0.81, ..."), then the analogy."""
    def scores(found: list[Neighbour]) -> str:
        return ", ".join(f"{n.label} {n.similarity:.2f}" for n in found)

    lines = [f"{view.labels[view.ids.index(token)]} → {scores(found)}"
             for token, found in view.neighbours.items()]
    if view.analogy is not None:
        lines.append(f"{view.analogy[0]} ≈ {scores(view.analogy[1])}")
    return lines


def embeddings_figure(view: EmbeddingView) -> Figure:
    """Left: the chosen tokens on their first two principal axes. Right: neighbour lists."""
    fig = new_figure(13, 6)
    scatter, table = fig.subplots(1, 2, width_ratios=[3, 2])
    scatter.scatter(view.points[:, 0], view.points[:, 1], s=14, color="#1f78b4")
    for (x, y), text in zip(view.points, view.labels, strict=True):
        scatter.annotate(text, (x, y), fontsize=8, family="monospace",
                         xytext=(3, 3), textcoords="offset points")
    scatter.set_title(f"{len(view.ids)} token embeddings, PCA to 2-D", fontsize=10)
    scatter.set_xlabel("principal component 1")
    scatter.set_ylabel("principal component 2")
    scatter.grid(alpha=0.3)
    table.text(0.0, 1.0, "\n".join(neighbour_lines(view)), va="top", ha="left",
               family="monospace", fontsize=8, wrap=True)
    table.set_title("cosine nearest neighbours", fontsize=10)
    table.set_axis_off()
    return fig
