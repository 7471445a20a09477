import math

import numpy as np
import pytest
import torch

from parrot.errors import ParrotError
from parrot.viz import embedding_view, embeddings_figure, png_bytes
from parrot.viz.embeddings import (
    analogy,
    default_words,
    embedding_matrix,
    nearest_neighbours,
    pca_2d,
    single_token_id,
)


def brute_force_cosine(rows: list[list[float]], v: list[float]) -> list[float]:
    def dot(a, b):
        return sum(x * y for x, y in zip(a, b, strict=True))
    return [dot(r, v) / math.sqrt(dot(r, r) * dot(v, v)) for r in rows]


def brute_force_top(scores: list[float], k: int, exclude: set[int]) -> list[int]:
    ranked = sorted((i for i in range(len(scores)) if i not in exclude),
                    key=lambda i: (-scores[i], i))
    return ranked[:k]


def test_embedding_matrix_is_the_models_token_table(model):
    assert torch.equal(embedding_matrix(model), model.tok_emb.weight.detach())


def test_neighbours_are_the_cosine_nearest_rows(model, tokenizer):
    matrix = embedding_matrix(model)
    rows = matrix.double().tolist()
    token = single_token_id(tokenizer, "king")
    scores = brute_force_cosine(rows, rows[token])
    got = nearest_neighbours(matrix, token, k=6)
    assert [i for i, _ in got] == brute_force_top(scores, 6, {token})
    for i, s in got:
        assert s == pytest.approx(scores[i], abs=1e-5)


def test_analogy_is_nearest_to_a_minus_b_plus_c(model, tokenizer):
    matrix = embedding_matrix(model)
    rows = matrix.double().tolist()
    a, b, c = (single_token_id(tokenizer, w) for w in ("queen", "king", "man"))
    target = [x - y + z for x, y, z in zip(rows[a], rows[b], rows[c], strict=True)]
    scores = brute_force_cosine(rows, target)
    got = analogy(matrix, a, b, c, k=4)
    assert [i for i, _ in got] == brute_force_top(scores, 4, {a, b, c})


def test_pca_projects_onto_the_top_two_covariance_eigenvectors():
    torch.manual_seed(1)
    x = torch.randn(20, 6) * torch.tensor([5.0, 3.0, 1.0, 0.5, 0.2, 0.1])
    got = pca_2d(x)
    centred = x.double().numpy() - x.double().numpy().mean(axis=0)
    values, vectors = np.linalg.eigh(np.cov(centred.T))
    want = centred @ vectors[:, ::-1][:, :2]
    for j in range(2):  # each axis is defined up to its sign
        sign = np.sign(got[:, j] @ want[:, j])
        np.testing.assert_allclose(got[:, j], sign * want[:, j], atol=1e-9)


def test_a_word_is_looked_up_with_and_without_a_leading_space(tokenizer):
    assert tokenizer.token_bytes(single_token_id(tokenizer, "king")) == b" king"
    assert tokenizer.token_bytes(single_token_id(tokenizer, " king")) == b" king"


def test_a_word_that_splits_is_refused_with_its_pieces(tokenizer):
    with pytest.raises(ParrotError, match=r"'woman' is not a single token \(it splits into"):
        single_token_id(tokenizer, "woman")


def test_view_plots_the_chosen_tokens_projection(model, tokenizer):
    view = embedding_view(model, tokenizer, ["king", "queen", "man", "castle"],
                          analogy_words=["queen", "king", "man"], k=3)
    matrix = embedding_matrix(model)
    np.testing.assert_allclose(view.points, pca_2d(matrix[view.ids]))
    assert view.labels == ["·king", "·queen", "·man", "·castle"]
    assert [n.id for n in view.neighbours[view.ids[0]]] == \
        [i for i, _ in nearest_neighbours(matrix, view.ids[0], 3)]
    assert view.analogy[0] == "·queen - ·king + ·man"
    fig = embeddings_figure(view)
    np.testing.assert_allclose(fig.axes[0].collections[0].get_offsets(), view.points)
    assert png_bytes(fig)[:4] == b"\x89PNG"


def test_default_words_are_learned_whole_word_tokens(tokenizer):
    ids = default_words(tokenizer, count=5)
    assert len(ids) == 5 and all(i >= 256 for i in ids)
    assert all(tokenizer.token_bytes(i).strip().isalpha() for i in ids)


def test_analogy_needs_three_words(model, tokenizer):
    with pytest.raises(ParrotError, match="three words"):
        embedding_view(model, tokenizer, ["king"], analogy_words=["king", "man"])


def test_the_in_text_form_with_a_space_is_preferred(tokenizer):
    # "the" is a token with and without the space: the spaced form wins. A learned piece
    # that has no spaced token of its own is found as written.
    spaced = tokenizer.encode(" the")
    assert len(spaced) == 1 and single_token_id(tokenizer, "the") == spaced[0]
    bare = [t for t in range(256, tokenizer.vocab_size)
            if tokenizer.token_bytes(t).isalpha() and len(tokenizer.encode(
                " " + tokenizer.token_bytes(t).decode())) > 1]
    word = tokenizer.token_bytes(bare[0]).decode()
    assert single_token_id(tokenizer, word) == bare[0]
