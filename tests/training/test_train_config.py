import pytest

from parrot.errors import ParrotError
from parrot.training.config import DataSpec, TrainConfig
from parrot.training.recipes import RECIPES, apply_overrides, get_recipe


def test_baseline_recipe_is_the_classic_small_cpu_recipe():
    model, train, data = get_recipe("shakespeare-baseline")
    assert (model.n_layers, model.n_heads, model.d_model, model.context_length) == (4, 4, 128, 64)
    assert (model.positions, model.norm, model.mlp) == ("learned", "layernorm", "gelu")
    assert model.tie_embeddings and model.dropout == 0.0 and model.vocab_size == 256
    assert (train.batch_size, train.steps, train.lr, train.min_lr) == (12, 2000, 1e-3, 1e-4)
    assert (train.warmup, train.beta2, train.weight_decay) == (100, 0.99, 0.1)
    assert (data.tokenizer, data.split, data.val_fraction) == ("bytes", "chars", 0.1)


def test_every_recipe_builds():
    for name in RECIPES:
        model, train, data = get_recipe(name)
        assert train.steps > 0 and model.n_layers > 0 and data.val_fraction > 0


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(ParrotError, match="shakespeare-baseline"):
        get_recipe("gpt-17")


def test_overrides_parse_to_each_fields_type():
    model, train, data = apply_overrides(
        get_recipe("tiny"),
        ["model.d_model=64", "train.lr=3e-3", "bf16=true", "seq_len=none", "data.split=chars",
         "model.n_kv_heads=2", "model.rope_theta=500"],
    )
    assert model.d_model == 64 and model.n_kv_heads == 2 and model.rope_theta == 500.0
    assert train.lr == 3e-3 and train.bf16 is True and train.seq_len is None
    assert data.split == "chars"


@pytest.mark.parametrize("item, message", [
    ("model.nope=1", "Unknown config key"),
    ("lr", "key=value"),
    ("model.d_model=wide", "type int"),
    ("train.steps=1.5", "type int"),
    ("train.bf16=maybe", "type bool"),
    ("vocab_size=300", "ambiguous"),
    ("model.positions=spiral", "positions"),
    ("train.steps=0", "at least 1"),
])
def test_bad_overrides_raise_one_clear_sentence(item, message):
    with pytest.raises(ParrotError, match=message):
        apply_overrides(get_recipe("tiny"), [item])


def test_configs_round_trip_through_dicts():
    train = TrainConfig(steps=7, lr=2e-3)
    assert TrainConfig.from_dict(train.to_dict()) == train
    data = DataSpec(tokenizer="bytes")
    assert DataSpec.from_dict(data.to_dict()) == data
    with pytest.raises(ParrotError, match="Unknown train config key"):
        TrainConfig.from_dict({"stepz": 3})
    with pytest.raises(ParrotError, match="train.lr must be of type"):
        TrainConfig(lr="fast")
