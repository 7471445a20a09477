import math

import numpy as np
import pytest
import torch
from viz_helpers import small_model

from parrot.errors import ParrotError
from parrot.viz import attention_figure, attention_maps, png_bytes

TEXT = "the king and the queen walked to the castle"


def naive_attention_weights(model, ids: list[int]) -> list[np.ndarray]:
    """Each layer's softmax(q k^T / sqrt(d) + causal mask), recomputed step by step from the
    model's parameters for a pre-norm model with learned positions (no RoPE, no ALiBi)."""
    tokens = torch.tensor(ids)
    T = len(ids)
    x = model.tok_emb(tokens) + model.pos_emb(torch.arange(T))
    out = []
    for block in model.blocks:
        a = block.attn
        h = block.norm1(x)
        q = a.q_proj(h).view(T, a.n_heads, a.head_dim).transpose(0, 1)
        k = a.k_proj(h).view(T, a.n_heads, a.head_dim).transpose(0, 1)
        v = a.v_proj(h).view(T, a.n_heads, a.head_dim).transpose(0, 1)
        scores = q @ k.transpose(1, 2) / math.sqrt(a.head_dim)
        if model.config.causal:
            future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
            scores = scores.masked_fill(future, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        out.append(weights.detach().numpy())
        x = x + a.o_proj((weights @ v).transpose(0, 1).reshape(T, -1))
        x = x + block.mlp(block.norm2(x))
    return out


def test_maps_are_the_models_softmax_weights(model, tokenizer):
    maps = attention_maps(model, tokenizer, TEXT)
    expected = naive_attention_weights(model, tokenizer.encode(TEXT))
    assert maps.n_layers == 2 and maps.n_heads == 4
    for got, want in zip(maps.weights, expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_image_of_one_head_holds_that_heads_weights(model, tokenizer):
    maps = attention_maps(model, tokenizer, TEXT)
    expected = naive_attention_weights(model, tokenizer.encode(TEXT))[1][2]
    fig = attention_figure(maps, layer=1, head=2)
    image = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(np.asarray(image.data), expected, atol=1e-5)
    np.testing.assert_allclose(image.data.sum(axis=1), 1.0, atol=1e-5)
    T = len(maps.ids)
    above = np.triu(np.ones((T, T), dtype=bool), k=1)
    assert np.all(image.data[above] == 0.0)
    assert np.array_equal(np.ma.getmaskarray(image), above)  # drawn as masked (grey)
    assert png_bytes(fig)[:4] == b"\x89PNG"


def test_grid_has_one_image_per_layer_and_head(model, tokenizer):
    maps = attention_maps(model, tokenizer, TEXT)
    fig = attention_figure(maps)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 2 * 4
    np.testing.assert_allclose(images[4 + 3].get_array().data, maps.weights[1][3])
    assert len(attention_figure(maps, layer=0).axes) == 4 + 1  # four heads and a colour bar


def test_bidirectional_model_attends_to_the_future(tokenizer):
    encoder = small_model(tokenizer, causal=False)
    maps = attention_maps(encoder, tokenizer, TEXT)
    expected = naive_attention_weights(encoder, tokenizer.encode(TEXT))
    np.testing.assert_allclose(maps.weights[0], expected[0], atol=1e-5)
    assert np.all(maps.weights[0] > 0)
    fig = attention_figure(maps, layer=0, head=0)
    assert not np.ma.getmaskarray(fig.axes[0].images[0].get_array()).any()


@pytest.mark.parametrize(("layer", "head", "message"), [
    (2, None, "Layer 2 is out of range: the model has 2 layers"),
    (-1, None, "Layer -1 is out of range"),
    (0, 4, "Head 4 is out of range: each layer has 4 heads"),
    (None, 1, "Give --layer together with --head"),
])
def test_bad_layer_or_head_is_refused(model, tokenizer, layer, head, message):
    maps = attention_maps(model, tokenizer, "the king")
    with pytest.raises(ParrotError, match=message):
        attention_figure(maps, layer, head)


def test_rope_gqa_model_maps_are_captured_softmax_rows(tokenizer):
    llama = small_model(tokenizer, positions="rope", norm="rmsnorm", mlp="swiglu",
                        n_kv_heads=2, bias=False)
    maps = attention_maps(llama, tokenizer, TEXT)
    T = len(maps.ids)
    for w in maps.weights:
        assert w.shape == (4, T, T)
        np.testing.assert_allclose(w.sum(axis=-1), 1.0, atol=1e-5)
        assert np.all(np.triu(w, k=1) == 0.0)
