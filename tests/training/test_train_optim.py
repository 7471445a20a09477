import torch
from torch import nn

from parrot.model import ModelConfig, Transformer
from parrot.training.optim import build_adamw, param_groups


def _names(model, params):
    ids = {id(p) for p in params}
    return {n for n, p in model.named_parameters(remove_duplicate=False) if id(p) in ids}


def test_only_matrices_outside_embeddings_are_decayed():
    cfg = ModelConfig(vocab_size=64, context_length=16, d_model=32, n_layers=2, n_heads=2,
                      bias=True, positions="learned", tie_embeddings=True)
    model = Transformer(cfg)
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    embedding_ids = {id(p) for m in model.modules() if isinstance(m, nn.Embedding)
                     for p in m.parameters()}
    for p in decay["params"]:
        assert p.dim() >= 2 and id(p) not in embedding_ids
    for p in no_decay["params"]:
        assert p.dim() < 2 or id(p) in embedding_ids
    assert any(p.dim() == 1 for p in no_decay["params"])  # norms and biases
    assert len(embedding_ids) == 2  # token and position tables
    assert embedding_ids <= {id(p) for p in no_decay["params"]}


def test_every_parameter_is_in_exactly_one_group_even_when_tied():
    cfg = ModelConfig(vocab_size=64, context_length=16, d_model=32, n_layers=1, n_heads=2)
    model = Transformer(cfg)
    groups = param_groups(model, 0.1)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))


def test_build_adamw_uses_the_groups_and_settings():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 4), nn.LayerNorm(4))
    opt = build_adamw(model, lr=3e-3, weight_decay=0.2, betas=(0.9, 0.95))
    assert isinstance(opt, torch.optim.AdamW)
    assert [len(g["params"]) for g in opt.param_groups] == [1, 4]
    assert opt.param_groups[0]["betas"] == (0.9, 0.95)
    assert opt.param_groups[0]["lr"] == 3e-3
