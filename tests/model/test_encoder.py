"""Encoder-only switches: token types, embedding norm, head transform, padding masks."""

import pytest
import torch

from parrot.errors import ParrotError
from parrot.model import AttentionCapture, ModelConfig, Transformer, get_preset
from parrot.model.heads import padding_mask
from parrot.model.pooling import cls_pool, l2_normalize, mean_pool

BERT = ModelConfig(vocab_size=50, context_length=16, d_model=32, n_layers=2, n_heads=4,
                   norm_placement="post", norm_eps=1e-12, causal=False, type_vocab_size=2,
                   embed_norm=True, head_transform=True)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Transformer(BERT).eval()


def test_attention_is_bidirectional(model):
    tokens = torch.tensor([[1, 2, 3, 4, 5]])
    changed = tokens.clone()
    changed[0, -1] = 9
    h1, h2 = model.hidden(tokens), model.hidden(changed)
    assert not torch.allclose(h1[0, 0], h2[0, 0])  # the first token sees the last one


def test_token_types_add_their_embedding(model):
    tokens = torch.tensor([[1, 2, 3]])
    types = torch.tensor([[0, 1, 1]])
    default = model.hidden(tokens)
    assert torch.equal(default, model.hidden(tokens, token_types=torch.zeros_like(tokens)))
    assert not torch.allclose(default, model.hidden(tokens, token_types=types))


def test_padded_batch_matches_each_row_alone(model):
    rows = [[1, 2, 3, 4, 5, 6], [7, 8, 9]]
    tokens = torch.tensor([rows[0], rows[1] + [0, 0, 0]])
    types = torch.tensor([[0, 0, 0, 1, 1, 1], [0, 1, 1, 0, 0, 0]])
    mask = torch.tensor([[1] * 6, [1, 1, 1, 0, 0, 0]])
    batch = model(tokens, token_types=types, attention_mask=mask)
    for b, row in enumerate(rows):
        n = len(row)
        alone = model(torch.tensor([row]), token_types=types[b:b + 1, :n])
        torch.testing.assert_close(batch[b, :n], alone[0], atol=1e-5, rtol=1e-5)


def test_fast_and_explicit_attention_agree_with_a_padding_mask(model):
    tokens = torch.tensor([[1, 2, 3, 4], [5, 6, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    fast = model(tokens, attention_mask=mask)
    capture = AttentionCapture()
    explicit = model(tokens, attention_mask=mask, capture=capture)
    torch.testing.assert_close(fast, explicit, atol=1e-5, rtol=1e-5)
    weights = capture.weights[0]                                    # (B, H, T, S)
    assert float(weights[1, :, :2, 2:].abs().max()) == 0.0  # real queries skip pad keys


def test_padding_on_a_causal_model_keeps_real_rows_unchanged():
    torch.manual_seed(1)
    gpt = Transformer(ModelConfig(vocab_size=50, context_length=16, d_model=32, n_layers=2,
                                  n_heads=4)).eval()
    tokens = torch.tensor([[1, 2, 3, 0]])
    masked = gpt(tokens, attention_mask=torch.tensor([[1, 1, 1, 0]]))
    torch.testing.assert_close(masked[:, :3], gpt(tokens[:, :3]), atol=1e-5, rtol=1e-5)


def test_padding_mask_lets_a_pad_query_see_itself():
    allowed = padding_mask(torch.tensor([[1, 0]]))
    assert allowed[0, 0].tolist() == [[True, False], [True, True]]


def test_head_transform_has_a_biased_head_and_changes_logits(model):
    assert model.lm_head.bias is not None and model.head_transform is not None
    h = model.hidden(torch.tensor([[1, 2]]))
    expected = model.head_transform(h) @ model.tok_emb.weight.T + model.lm_head.bias
    torch.testing.assert_close(model.logits(h), expected)


def test_a_model_without_output_head_gives_hidden_states_only():
    torch.manual_seed(0)
    bare = Transformer(BERT.replace(output_head=False, head_transform=False,
                                    tie_embeddings=False)).eval()
    assert bare.lm_head is None and bare.hidden(torch.tensor([[1, 2]])).shape == (1, 2, 32)
    with pytest.raises(ParrotError, match="no output head"):
        bare(torch.tensor([[1, 2]]))


def test_bad_mask_shapes_are_parrot_errors(model):
    tokens = torch.tensor([[1, 2]])
    with pytest.raises(ParrotError, match="attention_mask"):
        model(tokens, attention_mask=torch.tensor([[1, 1, 1]]))


def test_bert_tiny_preset_is_a_bidirectional_post_norm_encoder():
    cfg = get_preset("bert-tiny")
    assert not cfg.causal and cfg.norm_placement == "post" and cfg.embed_norm


def test_mean_pool_averages_real_tokens_only():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert mean_pool(hidden, mask).tolist() == [[2.0, 3.0]]
    assert cls_pool(hidden).tolist() == [[1.0, 2.0]]


def test_l2_normalize_gives_unit_rows():
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    torch.testing.assert_close(l2_normalize(x), torch.tensor([[0.6, 0.8], [0.0, 0.0]]))
