"""BART both ways: a tiny random `BartForConditionalGeneration` built locally (no download)
is converted by the production functions and must give the same logits as transformers."""

from __future__ import annotations

import pytest
import torch

from parrot.errors import ParrotError
from parrot.hub.gguf_model import instantiate
from parrot.hub.hf import export_hf, load_hf
from parrot.hub.hf_bart import (
    HF_BART,
    bart_from_canonical,
    bart_from_hf,
    bart_to_canonical,
    bart_to_hf,
)
from parrot.model import EncoderDecoder, ModelConfig
from parrot.tokenizer import Tokenizer

transformers = pytest.importorskip("transformers")

SPECIALS = ["<pad>", "<s>", "</s>", "<mask>"]
VOCAB = 256 + len(SPECIALS)
TOL = {"atol": 1e-4, "rtol": 1e-4}


@pytest.fixture(autouse=True)
def _one_thread():
    """These tensors are tiny: one thread skips thread hand-offs (slow on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def hf_bart(scale_embedding: bool = False, act: str = "gelu", tie: bool = True):
    """A random 2+2-layer, d_model 32 BART with every weight (norms, logits bias) perturbed."""
    torch.manual_seed(0)
    cfg = transformers.BartConfig(
        vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=48,
        decoder_ffn_dim=48, max_position_embeddings=40, activation_function=act,
        scale_embedding=scale_embedding, dropout=0.0, attention_dropout=0.0,
        activation_dropout=0.0, pad_token_id=256, bos_token_id=257, eos_token_id=258,
        decoder_start_token_id=258, forced_eos_token_id=None, tie_word_embeddings=tie,
    )
    model = transformers.BartForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.2 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.normal_(0.0, 0.05)
        model.final_logits_bias.normal_(0.0, 0.1)
    return model


def batch():
    """A padded source batch (rows 1 and 2 end in padding) and decoder inputs."""
    g = torch.Generator().manual_seed(1)
    src = torch.randint(0, 256, (3, 9), generator=g)
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    src[mask == 0] = 256
    tgt = torch.randint(0, 256, (3, 6), generator=g)
    tgt[:, 0] = 258
    return src, mask, tgt


def hf_logits(model, src, mask, tgt) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=src, attention_mask=mask, decoder_input_ids=tgt).logits


def to_parrot(model) -> EncoderDecoder:
    cfg = bart_from_hf(model.config.to_dict())
    return instantiate(cfg, bart_to_canonical(model.state_dict(), cfg), "test", EncoderDecoder)


@pytest.mark.parametrize("scale,act,tie", [(False, "gelu", True), (True, "relu", True),
                                           (False, "gelu", False)])
def test_converted_bart_matches_transformers_on_a_padded_batch(scale, act, tie):
    hf = hf_bart(scale, act, tie)
    ours = to_parrot(hf)
    src, mask, tgt = batch()
    with torch.no_grad():
        got = ours(src, tgt, mask.bool())
    torch.testing.assert_close(got, hf_logits(hf, src, mask, tgt), **TOL)


def test_bart_config_maps_its_quirks_onto_fields():
    cfg = bart_from_hf(hf_bart(scale_embedding=True).config.to_dict())
    assert (cfg.encoder_layers, cfg.n_layers, cfg.d_model, cfg.d_ff) == (2, 2, 32, 48)
    assert cfg.norm_placement == "post" and cfg.embed_norm and cfg.embed_scale
    assert cfg.head_bias and cfg.positions == "learned" and cfg.context_length == 40


def test_name_map_round_trips_every_tensor():
    hf = hf_bart()
    cfg = bart_from_hf(hf.config.to_dict())
    original = {k: v for k, v in hf.state_dict().items()
                if k not in ("lm_head.weight", "model.encoder.embed_tokens.weight",
                             "model.decoder.embed_tokens.weight")}
    assert cfg.shared_embeddings and cfg.tie_embeddings
    back = bart_from_canonical(bart_to_canonical(original, cfg), cfg)
    assert set(back) == set(original)
    for name, tensor in original.items():
        if "embed_positions" in name:  # the two offset rows are not model weights
            torch.testing.assert_close(back[name][2:], tensor[2:])
        else:
            torch.testing.assert_close(back[name], tensor)
    assert all("{i}" not in v or "{i}" in k for k, v in HF_BART.items())


@pytest.mark.parametrize("tie", [True, False])
def test_export_opens_in_transformers_and_loads_back(tmp_path, tie):
    hf = hf_bart(tie=tie)
    ours = to_parrot(hf)
    tokenizer = Tokenizer.train([], VOCAB, special_tokens=SPECIALS)
    out = export_hf(ours, tokenizer, tmp_path / "bart")
    reloaded_hf = transformers.BartForConditionalGeneration.from_pretrained(out).eval()
    src, mask, tgt = batch()
    expected = hf_logits(hf, src, mask, tgt)
    torch.testing.assert_close(hf_logits(reloaded_hf, src, mask, tgt), expected, **TOL)
    model, tok, info = load_hf(out)
    assert isinstance(model, EncoderDecoder) and tok.vocab_size == VOCAB
    assert info.extra["decoder_start_token_id"] == tokenizer.bos_id
    with torch.no_grad():
        torch.testing.assert_close(model(src, tgt, mask.bool()), expected, **TOL)


def test_non_bart_shapes_are_refused():
    cfg = ModelConfig(vocab_size=VOCAB, d_model=32, n_layers=1, encoder_layers=1,
                      n_heads=4, positions="rope")
    with pytest.raises(ParrotError, match="not BART-shaped"):
        bart_to_hf(cfg)
    with pytest.raises(ParrotError, match="pre-norm"):
        bart_from_hf({**hf_bart().config.to_dict(), "normalize_before": True})


def test_an_exported_folder_generates_like_the_model(tmp_path):
    from parrot.infer import Engine, SamplingParams
    from parrot.training.seq2seq import load_seq2seq

    ours = to_parrot(hf_bart())
    tokenizer = Tokenizer.train([], VOCAB, special_tokens=SPECIALS)
    out = export_hf(ours, tokenizer, tmp_path / "bart")
    model, loaded_tokenizer, tokens = load_seq2seq(out)
    assert tokens.start_id == tokenizer.bos_id and tokens.pad_id == 256
    params = SamplingParams(temperature=0.0, max_new_tokens=8, ignore_eos=True)
    sources = [[5, 6, 7], [8, 9]]

    def generate(m):
        engine = Engine(m, loaded_tokenizer, max_batch=2, start_id=tokens.start_id)
        return [c.token_ids for c in engine.generate_batch(sources, params)]

    assert generate(model) == generate(ours)
