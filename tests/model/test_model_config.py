"""ModelConfig validation, serialization and presets."""

from __future__ import annotations

import dataclasses
import json

import pytest

from parrot.errors import ParrotError
from parrot.model import PRESETS, ModelConfig, Transformer, get_preset


def test_to_dict_from_dict_round_trips_through_json():
    cfg = ModelConfig(n_kv_heads=2, positions="rope", mlp="swiglu", rope_theta=500000.0)
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ModelConfig().d_model = 3  # type: ignore[misc]


def test_replace_changes_fields_and_validates():
    cfg = ModelConfig().replace(n_layers=6, positions="alibi")
    assert cfg.n_layers == 6 and cfg.positions == "alibi"
    with pytest.raises(ParrotError, match="positions must be one of"):
        ModelConfig().replace(positions="spiral")


def test_unknown_key_names_the_key_and_the_valid_ones():
    with pytest.raises(ParrotError, match=r"Unknown model config key\(s\) d_modle; valid keys"):
        ModelConfig.from_dict({"d_modle": 64})


@pytest.mark.parametrize("key, value", [
    ("d_model", "128"), ("d_model", 1.5), ("n_layers", True), ("bias", 1),
    ("dropout", "0.1"), ("norm", 3), ("n_kv_heads", "2"),
])
def test_wrong_types_are_rejected(key, value):
    with pytest.raises(ParrotError, match=f"key '{key}' must be"):
        ModelConfig.from_dict({key: value})


def test_ints_are_accepted_for_float_fields():
    cfg = ModelConfig.from_dict({"rope_theta": 500000, "dropout": 0})
    assert isinstance(cfg.rope_theta, float) and cfg.dropout == 0.0


@pytest.mark.parametrize("changes, message", [
    (dict(d_model=100, n_heads=3), "divisible by n_heads"),
    (dict(n_heads=4, n_kv_heads=3), "multiple of n_kv_heads"),
    (dict(context_length=0), "context_length must be positive"),
    (dict(n_layers=-1), "n_layers must be positive"),
    (dict(dropout=1.0), "dropout must be in"),
    (dict(norm_eps=0.0), "norm_eps must be positive"),
    (dict(mlp="tanh"), "mlp must be one of"),
    (dict(norm_placement="middle"), "norm_placement must be one of"),
    (dict(positions="rope", head_dim=7), "even head size"),
    (dict(positions="sinusoidal", d_model=9, n_heads=1), "even d_model"),
    (dict(d_ff=0), "d_ff must be positive"),
])
def test_impossible_values_raise_a_clear_error(changes, message):
    with pytest.raises(ParrotError, match=message):
        ModelConfig(**changes)


def test_derived_sizes():
    cfg = ModelConfig(d_model=128, n_heads=4)
    assert (cfg.kv_heads, cfg.head_size, cfg.ff_size) == (4, 32, 512)
    cfg = ModelConfig(d_model=128, n_heads=4, n_kv_heads=1, head_dim=16, d_ff=100)
    assert (cfg.kv_heads, cfg.head_size, cfg.ff_size) == (1, 16, 100)


def test_every_small_preset_builds_and_runs():
    import torch

    for name in ("gpt-tiny", "llama-tiny"):
        model = Transformer(get_preset(name))
        assert model(torch.zeros(1, 4, dtype=torch.long)).shape == (1, 4, 256)
    assert set(PRESETS) >= {"gpt-tiny", "llama-tiny", "gpt2-small"}


def test_get_preset_applies_overrides_and_lists_names_on_error():
    assert get_preset("gpt-tiny", n_layers=2).n_layers == 2
    with pytest.raises(ParrotError, match="Unknown model preset 'gpt-huge'; choose one of: "):
        get_preset("gpt-huge")


def test_baseline_preset_is_the_classic_small_recipe():
    cfg = get_preset("gpt-tiny")
    assert (cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.context_length) == (4, 4, 128, 64)
    assert (cfg.positions, cfg.norm, cfg.mlp, cfg.tie_embeddings, cfg.dropout) == (
        "learned", "layernorm", "gelu", True, 0.0)
