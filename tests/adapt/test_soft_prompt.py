"""Soft prompts: only the prompt trains; the base weights stay bit-identical."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from parrot.adapt.soft_prompt import SoftPromptModel, load_soft_prompt, save_soft_prompt
from parrot.errors import ParrotError
from parrot.model import ModelConfig, Transformer

CFG = ModelConfig(vocab_size=100, context_length=32, d_model=32, n_layers=2, n_heads=4,
                  positions="learned", norm="layernorm", mlp="gelu", tie_embeddings=True)


def base_model(seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(CFG)


def test_prompt_output_matches_explicit_embedding_concatenation():
    model = base_model().eval()
    wrapped = SoftPromptModel(model, 3)
    tokens = torch.randint(0, 100, (2, 5))
    # Reference: the same computation written out with the prompt rows as real embeddings.
    x = torch.cat([wrapped.prompt.expand(2, -1, -1), model.tok_emb(tokens)], dim=1)
    x = x + model.pos_emb(torch.arange(8))
    for block in model.blocks:
        x = block(x, model._attention_inputs(torch.arange(8).expand(2, 8), None, None))
    expected = model.lm_head(model.final_norm(x))[:, 3:]
    torch.testing.assert_close(wrapped(tokens), expected, atol=1e-5, rtol=1e-5)


def test_training_changes_only_the_prompt():
    model = base_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    wrapped = SoftPromptModel(model, 4)
    start = wrapped.prompt.detach().clone()
    trainable = [p for p in wrapped.parameters() if p.requires_grad]
    assert trainable == [wrapped.prompt]
    opt = torch.optim.AdamW(trainable, lr=1e-2)
    tokens = torch.randint(0, 100, (4, 12))
    for _ in range(5):
        logits = wrapped(tokens[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert not torch.equal(wrapped.prompt.detach(), start)
    after = model.state_dict()
    assert set(after) == set(before)
    for key, value in before.items():
        assert torch.equal(after[key], value), key


def test_save_and_load_round_trip(tmp_path):
    wrapped = SoftPromptModel(base_model().eval(), 2)
    with torch.no_grad():
        wrapped.prompt.normal_()
    tokens = torch.randint(0, 100, (1, 6))
    save_soft_prompt(wrapped, tmp_path)
    loaded = load_soft_prompt(base_model().eval(), tmp_path)
    torch.testing.assert_close(loaded(tokens), wrapped(tokens), atol=0, rtol=0)


@pytest.mark.parametrize("n", [0, -2, 32])
def test_bad_prompt_length_is_an_error(n):
    with pytest.raises(ParrotError):
        SoftPromptModel(base_model(), n)
