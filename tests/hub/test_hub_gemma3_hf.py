"""Gemma 3 Hugging Face folders both ways, against `transformers` on small random models.

The models are built locally from a `Gemma3TextConfig` (nothing is downloaded): 4 layers
with every second one global, a sliding window of 4 shorter than the 16-token inputs, GQA,
and distinct RoPE bases, so every Gemma switch shows in the logits.
"""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from parrot.errors import ParrotError  # noqa: E402
from parrot.hub.hf import export_hf, load_hf  # noqa: E402
from parrot.hub.hf_gemma3 import gemma3_from_hf, gemma3_to_hf  # noqa: E402
from parrot.hub.naming import (  # noqa: E402
    HF_GEMMA3,
    gemma_norms_from_canonical,
    gemma_norms_to_canonical,
    invert,
    rename,
)
from parrot.model import KVCache  # noqa: E402
from parrot.model.presets import get_preset  # noqa: E402
from parrot.tokenizer import Tokenizer  # noqa: E402

VOCAB = 300


def gemma_config(**overrides):
    settings = dict(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=128,
        rms_norm_eps=1e-6, sliding_window=4, layer_types=["sliding_attention",
                                                          "full_attention"] * 2,
        rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1e6},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}},
        query_pre_attn_scalar=16, tie_word_embeddings=True, pad_token_id=0, bos_token_id=2,
        eos_token_id=1)
    settings.update(overrides)
    return transformers.Gemma3TextConfig(**settings)


def random_gemma(config):
    torch.manual_seed(0)
    model = transformers.Gemma3ForCausalLM(config).eval()
    with torch.no_grad():  # HF initialises the (1 + w) norm weights to 0: move them
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.3)
    return model


def tokens(length: int = 16) -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, length), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.train(["the quick brown fox jumps over the lazy dog " * 20], VOCAB,
                           special_tokens=["<pad>", "<eos>", "<bos>"])


CONFIGS = {
    "tied_window_4": {},
    "untied_mqa_scalar_32": dict(tie_word_embeddings=False, num_key_value_heads=1,
                                 query_pre_attn_scalar=32),
    "every_third_global": dict(num_hidden_layers=6, layer_types=(["sliding_attention"] * 2
                                                                 + ["full_attention"]) * 2),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_gemma3_folder_loads_with_equal_logits(name, tokenizer, tmp_path):
    reference = random_gemma(gemma_config(**CONFIGS[name]))
    reference.save_pretrained(tmp_path)
    tokenizer.save(tmp_path)
    model, _, info = load_hf(tmp_path)
    assert info.architecture == "gemma3_text"
    with torch.no_grad():
        torch.testing.assert_close(model(tokens()), reference(tokens()).logits,
                                   rtol=1e-4, atol=1e-4)


def test_loaded_gemma3_decodes_with_a_cache_like_transformers(tokenizer, tmp_path):
    """Cached decode past the window equals transformers' full forward."""
    reference = random_gemma(gemma_config())
    reference.save_pretrained(tmp_path)
    tokenizer.save(tmp_path)
    model, _, _ = load_hf(tmp_path)
    ids, cache = tokens(12), KVCache(model.config, 2, 12)
    with torch.no_grad():
        steps = [model(ids[:, :3], cache=cache)]
        steps += [model(ids[:, t:t + 1], positions=torch.full((2, 1), t), cache=cache)
                  for t in range(3, 12)]
        torch.testing.assert_close(torch.cat(steps, 1), reference(ids).logits,
                                   rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_exported_gemma3_opens_in_transformers_with_equal_logits(name, tokenizer, tmp_path):
    reference = random_gemma(gemma_config(**CONFIGS[name]))
    reference.save_pretrained(tmp_path / "src")
    tokenizer.save(tmp_path / "src")
    model, tok, info = load_hf(tmp_path / "src")
    export_hf(model, tok, tmp_path / "out", meta=info)
    reopened = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert type(reopened).__name__ == "Gemma3ForCausalLM"
    with torch.no_grad():
        torch.testing.assert_close(reopened(tokens()).logits, model(tokens()),
                                   rtol=1e-4, atol=1e-4)
    for key, value in reference.state_dict().items():  # the norms come back as 1 + w
        torch.testing.assert_close(reopened.state_dict()[key], value, rtol=0, atol=1e-6)


def test_config_round_trips_through_hf_form():
    cfg = gemma3_from_hf(gemma_config().to_dict())
    assert (cfg.sliding_window, cfg.global_every, cfg.rope_local_theta) == (4, 2, 1e4)
    assert cfg.attn_scale is None and cfg.is_sliding(0) and not cfg.is_sliding(1)
    assert gemma3_from_hf(gemma3_to_hf(cfg)) == cfg
    scaled = gemma3_from_hf(gemma_config(query_pre_attn_scalar=32).to_dict())
    assert scaled.attn_scale == pytest.approx(32 ** -0.5)
    assert gemma3_from_hf(gemma3_to_hf(scaled)) == scaled


def test_older_config_keys_are_read():
    """transformers 4.5x wrote rope_theta / rope_local_base_freq / sliding_window_pattern."""
    old = {"model_type": "gemma3_text", "vocab_size": 10, "hidden_size": 8,
           "intermediate_size": 16, "num_hidden_layers": 6, "num_attention_heads": 2,
           "num_key_value_heads": 1, "head_dim": 4, "rope_theta": 1e6,
           "rope_local_base_freq": 1e4, "sliding_window": 512, "sliding_window_pattern": 6,
           "query_pre_attn_scalar": 4}
    cfg = gemma3_from_hf(old)
    assert (cfg.rope_theta, cfg.rope_local_theta, cfg.global_every) == (1e6, 1e4, 6)
    assert [cfg.is_sliding(i) for i in range(6)] == [True] * 5 + [False]


def test_norm_offset_and_names_round_trip():
    state = {"blocks.0.norm1.weight": torch.ones(3), "blocks.0.attn.q_norm.weight": torch.zeros(2),
             "blocks.0.attn.q_proj.weight": torch.ones(2, 2), "final_norm.weight": torch.ones(3)}
    hf_side = gemma_norms_from_canonical(state)
    assert hf_side["blocks.0.norm1.weight"].tolist() == [0.0] * 3
    assert hf_side["blocks.0.attn.q_proj.weight"].tolist() == [[1.0] * 2] * 2
    for key, value in gemma_norms_to_canonical(hf_side).items():
        assert torch.equal(value, state[key])
    for foreign, canonical in HF_GEMMA3.items():
        name = foreign.replace("{i}", "3")
        assert rename(rename(name, HF_GEMMA3), invert(HF_GEMMA3)) == name
        assert rename(name, HF_GEMMA3) == canonical.replace("{i}", "3")


@pytest.mark.parametrize("change, message", [
    (dict(final_logit_softcapping=30.0), "final_logit_softcapping"),
    (dict(rope_parameters={"full_attention": {"rope_type": "linear", "factor": 8.0,
                                              "rope_theta": 1e6},
                           "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}),
     "RoPE scaling 'linear'"),
    (dict(layer_types=["sliding_attention", "full_attention", "full_attention",
                       "sliding_attention"]), "one period"),
])
def test_unsupported_gemma3_variants_are_clear_errors(change, message):
    with pytest.raises(ParrotError, match=message):
        gemma3_from_hf(gemma_config(**change).to_dict())


def test_gemma3_270m_preset_has_the_gguf_shape():
    cfg = get_preset("gemma3-270m")
    assert (cfg.vocab_size, cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.kv_heads) == (
        262144, 640, 18, 4, 1)
    assert (cfg.head_size, cfg.ff_size, cfg.sliding_window, cfg.global_every) == (
        256, 2048, 512, 6)
    assert gemma3_from_hf(gemma3_to_hf(cfg)) == cfg
