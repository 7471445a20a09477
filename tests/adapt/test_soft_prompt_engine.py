"""A soft-prompt model under a KV cache and the engine equals a full recompute."""

from __future__ import annotations

import pytest
import torch

from parrot.adapt.soft_prompt import SoftPromptModel
from parrot.infer import Engine, SamplingParams
from parrot.model import KVCache, ModelConfig, Transformer
from parrot.tokenizer import Tokenizer

CONFIGS = {
    "rope-gqa": ModelConfig(vocab_size=256, context_length=48, d_model=32, n_layers=2,
                            n_heads=4, n_kv_heads=2, positions="rope", norm="rmsnorm",
                            mlp="swiglu", bias=False),
    "learned": ModelConfig(vocab_size=256, context_length=48, d_model=32, n_layers=2,
                           n_heads=4, positions="learned"),
}


def prompted(name: str, n: int = 5) -> SoftPromptModel:
    torch.manual_seed(0)
    wrapped = SoftPromptModel(Transformer(CONFIGS[name]), n).eval()
    with torch.no_grad():
        wrapped.prompt.normal_(0, 0.5)  # far from the initial token rows, so it matters
    return wrapped


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_cached_chunks_equal_full_recompute(name):
    wrapped = prompted(name)
    tokens = torch.randint(0, 256, (2, 11))
    with torch.no_grad():
        full = wrapped(tokens)                                         # (2, 11, V)
        cache = KVCache(wrapped.config, 2, 24)
        parts = [wrapped(tokens[:, a:b], torch.arange(a, b).expand(2, -1), cache)
                 for a, b in ((0, 6), (6, 7), (7, 11))]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)


def test_the_prompt_changes_the_output():
    wrapped = prompted("rope-gqa")
    tokens = torch.randint(0, 256, (1, 6))
    with torch.no_grad():
        assert not torch.allclose(wrapped(tokens), wrapped.model(tokens), atol=1e-3)


def test_context_is_the_base_context_minus_the_prompt():
    wrapped = prompted("learned", n=5)
    assert wrapped.config.context_length == 43 and wrapped.model.config.context_length == 48


def naive_greedy(wrapped: SoftPromptModel, ids: list[int], steps: int) -> list[int]:
    """Greedy decoding by recomputing the whole sequence, prompt vectors prepended."""
    out = []
    with torch.no_grad():
        for _ in range(steps):
            logits = wrapped(torch.tensor([ids + out]))
            out.append(int(logits[0, -1].argmax()))
    return out


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_engine_greedy_equals_naive_recompute(name):
    wrapped = prompted(name)
    tokenizer = Tokenizer.train([], 256)
    engine = Engine(wrapped, tokenizer, max_batch=2, eos_ids=[])
    prompts = [[5, 17, 99, 3], [200, 1, 2, 3, 4, 5, 6]]
    params = SamplingParams(temperature=0.0, max_new_tokens=10)
    got = [c.token_ids for c in engine.generate_batch(prompts, params)]
    assert got == [naive_greedy(wrapped, p, 10) for p in prompts]
    # A next turn that extends a slot's ids reuses its cache and still matches.
    longer = prompts[0] + got[0] + [7, 8]
    again = engine.generate(longer, params)
    assert again.token_ids == naive_greedy(wrapped, longer, 10)


def test_prompt_keys_are_recomputed_after_training():
    wrapped = prompted("rope-gqa")
    tokens = torch.randint(0, 256, (1, 4))
    with torch.no_grad():
        wrapped(tokens, None, KVCache(wrapped.config, 1, 8))
        wrapped.prompt.add_(1.0)  # an optimizer step bumps the version counter the same way
        cached = wrapped(tokens, None, KVCache(wrapped.config, 1, 8))
        torch.testing.assert_close(cached, wrapped(tokens), atol=1e-5, rtol=1e-5)


def test_prepared_soft_prompt_model_decodes_like_the_plain_one():
    """Fused projections and parrot's kernels under a soft prompt: its cache maps slots
    itself, so decode attention takes the general path and the logits stay."""
    import copy
    import os

    from parrot.adapt.prepare import prepare_for_inference
    from parrot.kernels import settings_from

    plain = prompted("rope-gqa")
    prepared = prepare_for_inference(copy.deepcopy(plain), "none", **settings_from(os.environ))
    tokens = torch.randint(0, 256, (2, 9))
    outputs = []
    with torch.no_grad():
        for model in (plain, prepared):
            cache = KVCache(model.config, 2, 24)
            outputs.append(torch.cat([model(tokens[:, a:b], torch.arange(a, b).expand(2, -1),
                                            cache) for a, b in ((0, 6), (6, 7), (7, 8), (8, 9))],
                                     dim=1))
    torch.testing.assert_close(outputs[1], outputs[0], atol=1e-5, rtol=1e-5)
