"""The whole model against a naive reference, plus causality, tying, dropout and sizes."""

from __future__ import annotations

import pytest
import torch
from naive_transformer import naive_logits

from parrot.errors import ParrotError
from parrot.model import AttentionCapture, ModelConfig, Transformer, get_preset

POSITIONS = ["learned", "sinusoidal", "rope", "alibi", "none"]
SMALL = dict(vocab_size=50, context_length=16, d_model=24, n_layers=2, n_heads=4)


def build(seed: int = 0, **changes) -> Transformer:
    torch.manual_seed(seed)
    model = Transformer(ModelConfig(**{**SMALL, **changes})).eval()
    # Non-trivial norm weights/biases so that a wrong norm formula cannot hide.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.3 * torch.randn_like(p))
    return model


VARIANTS = [dict(positions=p) for p in POSITIONS] + [
    dict(norm="rmsnorm"),
    dict(norm_placement="post"),
    dict(norm="rmsnorm", norm_placement="post", positions="rope"),
    dict(mlp="relu"), dict(mlp="gelu_tanh"), dict(mlp="swiglu"), dict(mlp="geglu"),
    dict(mlp="geglu_tanh", d_ff=40),
    dict(n_kv_heads=2), dict(n_kv_heads=1, positions="rope"), dict(n_kv_heads=2, positions="alibi"),
    dict(bias=False, tie_embeddings=False),
    dict(head_dim=8, n_heads=3, n_kv_heads=1, positions="rope"),
    dict(n_heads=6, positions="alibi"),
    dict(causal=False), dict(causal=False, positions="alibi"),
]


def variant_id(changes: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in changes.items())


@pytest.mark.parametrize("changes", VARIANTS, ids=variant_id)
def test_logits_match_the_naive_reference(changes):
    model = build(**changes)
    tokens = torch.randint(0, 50, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fast = model(tokens)
        explicit = model(tokens, capture=AttentionCapture())
    expected = naive_logits(model, tokens).float()
    torch.testing.assert_close(fast, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(explicit, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("positions", POSITIONS)
@pytest.mark.parametrize("capture", [False, True])
def test_changing_token_t_never_changes_earlier_logits(positions, capture):
    model = build(positions=positions)
    tokens = torch.randint(0, 50, (1, 12), generator=torch.Generator().manual_seed(2))
    for t in (0, 5, 11):
        changed = tokens.clone()
        changed[0, t] = (changed[0, t] + 7) % 50
        with torch.no_grad():
            a = model(tokens, capture=AttentionCapture() if capture else None)
            b = model(changed, capture=AttentionCapture() if capture else None)
        assert torch.equal(a[:, :t], b[:, :t])
        assert not torch.allclose(a[:, t:], b[:, t:])


def test_a_bidirectional_model_lets_later_tokens_change_earlier_logits():
    model = build(causal=False)
    tokens = torch.randint(0, 50, (1, 8))
    changed = tokens.clone()
    changed[0, -1] = (changed[0, -1] + 1) % 50
    with torch.no_grad():
        assert not torch.allclose(model(tokens)[:, 0], model(changed)[:, 0])


def test_capture_collects_one_weight_map_per_layer_that_is_a_causal_distribution():
    model = build(n_kv_heads=2)
    capture = AttentionCapture()
    with torch.no_grad():
        model(torch.randint(0, 50, (3, 7)), capture=capture)
    assert len(capture) == 2
    for weights in capture.weights:
        assert weights.shape == (3, 4, 7, 7)
        torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4, 7))
        assert torch.all(weights.triu(1) == 0)


def test_tied_head_shares_storage_and_untied_does_not():
    tied = Transformer(ModelConfig(**SMALL))
    untied = Transformer(ModelConfig(**SMALL, tie_embeddings=False))
    assert tied.lm_head.weight.data_ptr() == tied.tok_emb.weight.data_ptr()
    assert untied.lm_head.weight.data_ptr() != untied.tok_emb.weight.data_ptr()
    assert untied.num_parameters() - tied.num_parameters() == 50 * 24


def test_dropout_is_active_in_training_and_off_in_eval():
    model = build(dropout=0.2)
    tokens = torch.randint(0, 50, (2, 8))
    model.train()
    assert not torch.equal(model(tokens), model(tokens))
    assert not torch.equal(model(tokens, capture=AttentionCapture()), model(tokens))
    model.eval()
    torch.testing.assert_close(model(tokens), naive_logits(model, tokens).float(),
                               atol=1e-5, rtol=1e-5)


def test_zero_dropout_trains_and_evaluates_identically():
    model = build()
    tokens = torch.randint(0, 50, (2, 8))
    assert torch.equal(model.train()(tokens), model.eval()(tokens))


def test_bias_switch_removes_every_bias():
    names = [n for n, _ in build(bias=False).named_parameters()]
    assert not [n for n in names if n.endswith("bias")]
    assert any(n.endswith("bias") for n, _ in build(bias=True).named_parameters())


@pytest.mark.parametrize("positions", POSITIONS)
def test_input_longer_than_the_context_raises_a_clear_error(positions):
    model = build(positions=positions)
    with pytest.raises(ParrotError, match="context length is 16"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_bad_shapes_raise_clear_errors():
    model = build()
    with pytest.raises(ParrotError, match="integer tensor"):
        model(torch.zeros(4, dtype=torch.long))
    with pytest.raises(ParrotError, match="positions must have"):
        model(torch.zeros(1, 4, dtype=torch.long), positions=torch.arange(3)[None])


def test_initialisation_follows_gpt2():
    torch.manual_seed(0)
    model = Transformer(get_preset("gpt-tiny", n_layers=8, d_model=256))
    std = lambda p: float(p.detach().std())  # noqa: E731
    assert abs(std(model.tok_emb.weight) - 0.02) < 0.001
    assert abs(std(model.blocks[0].attn.q_proj.weight) - 0.02) < 0.001
    assert abs(std(model.blocks[0].attn.o_proj.weight) - 0.02 / 4) < 0.0005
    assert abs(std(model.blocks[3].mlp.down_proj.weight) - 0.02 / 4) < 0.0005
    assert torch.all(model.blocks[0].attn.q_proj.bias == 0)
    assert torch.all(model.blocks[0].norm1.weight == 1)


def test_initialisation_is_reproducible_from_the_global_seed():
    torch.manual_seed(5)
    a = Transformer(ModelConfig(**SMALL))
    torch.manual_seed(5)
    b = Transformer(ModelConfig(**SMALL))
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def hand_count(V, C, d, L, H, Hkv, D, ff, gated, bias, tied, learned, layernorm):
    """Parameter counts of the configuration, written out matrix by matrix."""
    attn = d * H * D + 2 * d * Hkv * D + H * D * d
    attn_b = (H * D + 2 * Hkv * D + d) if bias else 0
    mlp = (3 if gated else 2) * d * ff
    mlp_b = ((2 if gated else 1) * ff + d) if bias else 0
    norm = d * (2 if layernorm and bias else 1)
    block = attn + attn_b + mlp + mlp_b + 2 * norm
    embeddings = V * d + (C * d if learned else 0) + (0 if tied else V * d)
    return L * block + norm + embeddings, L * block + norm


def test_parameter_count_matches_a_hand_count():
    model = Transformer(get_preset("gpt-tiny"))
    total, non_embedding = hand_count(256, 64, 128, 4, 4, 4, 32, 512, False, True, True, True,
                                      True)
    assert model.num_parameters() == total
    assert model.num_parameters(exclude_embeddings=True) == non_embedding
    llama = Transformer(ModelConfig(**SMALL, n_kv_heads=2, mlp="swiglu", bias=False,
                                    norm="rmsnorm", positions="rope", tie_embeddings=False))
    total, non_embedding = hand_count(50, 16, 24, 2, 4, 2, 6, 64, True, False, False, False,
                                      False)
    assert llama.num_parameters() == total
    assert llama.num_parameters(exclude_embeddings=True) == non_embedding


def test_flops_per_token_matches_a_hand_count():
    model = Transformer(get_preset("gpt-tiny"))
    _, n = hand_count(256, 64, 128, 4, 4, 4, 32, 512, False, True, True, True, True)
    assert model.flops_per_token() == 2 * n + 4 * 4 * 64 * 128 + 2 * 128 * 256


def test_gated_mlp_default_width_keeps_the_plain_parameter_budget():
    cfg = ModelConfig(d_model=384, mlp="swiglu")
    assert cfg.ff_size == 1024  # 8/3 * 384, already a multiple of 64
    assert ModelConfig(d_model=128, mlp="geglu").ff_size == 384


def test_reset_parameters_depends_only_on_the_global_seed():
    a, b = build(seed=1, norm="rmsnorm"), build(seed=2, norm="rmsnorm")  # norms perturbed
    for model in (a, b):
        torch.manual_seed(9)
        model.reset_parameters()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb), name
    assert torch.all(a.blocks[1].norm2.weight == 1)


def test_bfloat16_model_runs_and_returns_float32_logits():
    model = build(positions="rope", n_kv_heads=2, norm="rmsnorm").to(torch.bfloat16)
    tokens = torch.randint(0, 50, (2, 9))
    with torch.no_grad():
        logits = model(tokens)
        reference = build(positions="rope", n_kv_heads=2, norm="rmsnorm")(tokens)
    assert logits.dtype == torch.float32
    assert float((logits - reference).abs().max()) < 0.1
