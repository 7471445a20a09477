"""The encoder-decoder: masking, causality, cached decoding and configuration."""

from __future__ import annotations

import pytest
import torch

from parrot.errors import ParrotError
from parrot.model import (
    EncoderDecoder,
    ModelConfig,
    Transformer,
    build_model,
    get_preset,
)

BASE = dict(vocab_size=40, context_length=24, d_model=32, n_layers=2, encoder_layers=2,
            n_heads=4)
VARIANTS = {
    "pre-learned": {},
    "post-rope-gqa": dict(norm_placement="post", positions="rope", n_kv_heads=2,
                          norm="rmsnorm", mlp="swiglu", bias=False),
    "sinusoidal-separate": dict(positions="sinusoidal", shared_embeddings=False,
                                tie_embeddings=False, embed_norm=True, embed_scale=True,
                                head_bias=True),
}


@pytest.fixture(autouse=True)
def _one_thread():
    """These tensors are tiny: one thread skips thread hand-offs (slow on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def model_for(variant: str) -> EncoderDecoder:
    torch.manual_seed(0)
    model = EncoderDecoder(ModelConfig(**BASE, **VARIANTS[variant])).eval()
    with torch.no_grad():  # non-trivial norms and head bias
        for name, p in model.named_parameters():
            if "norm" in name or name == "lm_head.bias":
                p.add_(0.1 * torch.randn_like(p))
    return model


def data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 40, (3, 7), generator=g), torch.randint(0, 40, (3, 5), generator=g)


@pytest.mark.parametrize("variant", VARIANTS)
def test_forward_is_decode_of_encode(variant):
    model = model_for(variant)
    src, tgt = data()
    with torch.no_grad():
        logits = model(src, tgt)
        again = model.decode(tgt, model.encode(src))
    assert logits.shape == (3, 5, 40) and logits.dtype == torch.float32
    torch.testing.assert_close(logits, again)


@pytest.mark.parametrize("variant", VARIANTS)
def test_source_padding_is_invisible(variant):
    model = model_for(variant)
    src, tgt = data()
    padded = torch.cat([src, torch.randint(0, 40, (3, 4))], dim=1)
    mask = torch.zeros_like(padded, dtype=torch.bool)
    mask[:, :7] = True
    with torch.no_grad():
        torch.testing.assert_close(model(padded, tgt, mask), model(src, tgt),
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_decoder_is_causal(variant):
    model = model_for(variant)
    src, tgt = data()
    changed = tgt.clone()
    changed[:, 3:] = (changed[:, 3:] + 1) % 40
    with torch.no_grad():
        a, b = model(src, tgt), model(src, changed)
    torch.testing.assert_close(a[:, :3], b[:, :3])
    assert not torch.allclose(a[:, 3:], b[:, 3:])


@pytest.mark.parametrize("variant", VARIANTS)
def test_cached_step_by_step_decoding_equals_recompute(variant):
    model = model_for(variant)
    src, tgt = data()
    mask = torch.ones_like(src, dtype=torch.bool)
    mask[1, 5:] = False
    with torch.no_grad():
        memory = model.encode(src, mask)
        full = model.decode(tgt, memory, mask)
        cache = model.new_cache(memory, mask, max_len=8)
        steps = [model.decode(tgt[:, t : t + 1], None, positions=torch.full((3, 1), t),
                              cache=cache) for t in range(tgt.shape[1])]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_cached_prefill_then_steps_equals_recompute():
    model = model_for("pre-learned")
    src, tgt = data(1)
    with torch.no_grad():
        memory = model.encode(src)
        cache = model.new_cache(memory, None, max_len=8)
        first = model.decode(tgt[:, :3], None, cache=cache)
        rest = model.decode(tgt[:, 3:], None, positions=torch.arange(3, 5).expand(3, 2),
                            cache=cache)
        full = model.decode(tgt, memory)
    torch.testing.assert_close(torch.cat([first, rest], 1), full, atol=1e-5, rtol=1e-5)


def test_embeddings_shared_or_separate():
    shared = EncoderDecoder(ModelConfig(**BASE))
    separate = EncoderDecoder(ModelConfig(**BASE, shared_embeddings=False))
    assert shared.enc_tok_emb is None and shared.lm_head.weight is shared.tok_emb.weight
    extra = separate.num_parameters() - shared.num_parameters()
    assert extra == 40 * 32
    assert separate.num_parameters(exclude_embeddings=True) == \
        shared.num_parameters(exclude_embeddings=True)


def test_gradients_reach_encoder_through_cross_attention():
    model = EncoderDecoder(ModelConfig(**BASE))
    src, tgt = data()
    model(src, tgt).sum().backward()
    assert model.encoder[0].attn.q_proj.weight.grad.abs().sum() > 0
    assert model.decoder[1].cross.k_proj.weight.grad.abs().sum() > 0


def test_build_model_picks_the_architecture():
    assert isinstance(build_model(ModelConfig(**BASE)), EncoderDecoder)
    assert isinstance(build_model(ModelConfig(**{**BASE, "encoder_layers": 0})), Transformer)
    assert get_preset("seq2seq-tiny").is_encoder_decoder


@pytest.mark.parametrize("change,words", [
    (dict(positions="alibi"), "ALiBi"), (dict(n_experts=4), "mixture"),
    (dict(encoder_layers=0), "encoder_layers"),
])
def test_unsupported_settings_raise_one_sentence(change, words):
    with pytest.raises(ParrotError, match=words):
        EncoderDecoder(ModelConfig(**{**BASE, **change}))


def test_inputs_longer_than_the_context_raise():
    model = EncoderDecoder(ModelConfig(**BASE))
    with pytest.raises(ParrotError, match="context length"):
        model.encode(torch.zeros(1, 25, dtype=torch.long))


def test_decoder_only_style_calls_are_refused_clearly():
    model = EncoderDecoder(ModelConfig(**BASE))
    tokens = torch.zeros(1, 3, dtype=torch.long)
    for call in (lambda: model(tokens), lambda: model.hidden(tokens)):
        with pytest.raises(ParrotError, match="encoder-decoder model"):
            call()
