"""Seq2seq objectives: the pairs loss mask exactly, and the denoising noise functions."""

from __future__ import annotations

import statistics
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from parrot.data.pairs import IGNORE, Seq2SeqTokens, make_batch
from parrot.errors import ParrotError
from parrot.model import EncoderDecoder, ModelConfig
from parrot.training.objectives_seq2seq import (
    NoiseConfig,
    corrupt,
    delete_tokens,
    denoise,
    denoise_batch,
    mask_spans,
    seq2seq_loss,
    shuffle_sentences,
    span_lengths,
)

TOKENS = Seq2SeqTokens(start_id=1, eos_id=2, pad_id=0, mask_id=3)
MASK = 3


@pytest.fixture(autouse=True)
def _one_thread():
    """These tensors are tiny: one thread skips thread hand-offs (slow on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_teacher_forcing_batch_shifts_targets_and_masks_padding():
    batch = make_batch([([10, 11, 12], [20, 21]), ([13], [22, 23, 24])], TOKENS)
    assert batch.src.tolist() == [[10, 11, 12], [13, 0, 0]]
    assert batch.src_mask.tolist() == [[True, True, True], [True, False, False]]
    assert batch.tgt_in.tolist() == [[1, 20, 21, 0], [1, 22, 23, 24]]
    assert batch.labels.tolist() == [[20, 21, 2, IGNORE], [22, 23, 24, 2]]
    assert batch.target_tokens == 7


def test_pairs_loss_is_the_mean_over_real_target_tokens_only():
    torch.manual_seed(0)
    model = EncoderDecoder(ModelConfig(vocab_size=30, context_length=16, d_model=32,
                                       n_layers=1, encoder_layers=1, n_heads=4))
    batch = make_batch([([10, 11, 12], [20, 21]), ([13], [22, 23, 24])], TOKENS)
    loss, metrics = seq2seq_loss(model, batch)
    # Reference: each example alone, summed over its real positions, divided by their count.
    total = 0.0
    for src, tgt in (([10, 11, 12], [20, 21]), ([13], [22, 23, 24])):
        logits = model(torch.tensor([src]), torch.tensor([[1, *tgt]]))[0]
        total += F.cross_entropy(logits, torch.tensor([*tgt, 2]), reduction="sum").item()
    assert loss.item() == pytest.approx(total / 7, rel=1e-5)
    assert 0.0 <= metrics["token_accuracy"].item() <= 1.0


def test_span_lengths_sum_to_the_budget_and_average_lambda():
    lengths = span_lengths(30, 3.0, gen())
    assert sum(lengths) == 30
    many = [n for seed in range(300) for n in span_lengths(200, 3.0, gen(seed))[:-1]]
    assert statistics.mean(many) == pytest.approx(3.0, abs=0.1)  # Poisson(3) draws
    assert 0 in many  # zero-length spans exist (they insert a mask)


def test_mask_spans_masks_exactly_the_budget_one_mask_per_span():
    ids = list(range(100, 200))
    for seed in range(50):
        out = mask_spans(ids, 0.3, 3.0, MASK, gen(seed))
        masks = out.count(MASK)
        kept = [t for t in out if t != MASK]
        assert len(kept) == 70 and kept == sorted(kept)  # the rest, in order
        assert len(out) == 70 + masks
        assert all(not (a == MASK and b == MASK) for a, b in zip(out, out[1:], strict=False))


def test_mask_count_follows_the_poisson_span_count():
    counts = [mask_spans(list(range(10, 310)), 0.3, 3.0, MASK, gen(s)).count(MASK)
              for s in range(200)]
    # 90 masked tokens in spans of mean length 3 (zeros included): about 30 masks.
    assert statistics.mean(counts) == pytest.approx(90 / 3.0, rel=0.1)


def test_noise_is_deterministic_under_a_seed():
    ids = list(range(50, 120))
    noise = NoiseConfig(mask_ratio=0.3, delete_ratio=0.1, sentence_end_ids=(60, 80, 100))
    assert corrupt(ids, noise, MASK, gen(7)) == corrupt(ids, noise, MASK, gen(7))
    assert corrupt(ids, noise, MASK, gen(7)) != corrupt(ids, noise, MASK, gen(8))


def test_delete_tokens_removes_the_ratio_and_keeps_order():
    out = delete_tokens(list(range(100)), 0.2, gen())
    assert len(out) == 80 and out == sorted(out)


def test_shuffle_sentences_permutes_whole_sentences():
    ids = [10, 11, 99, 20, 99, 30, 31, 32, 99, 40]
    seen = set()
    for seed in range(30):
        out = shuffle_sentences(ids, (99,), gen(seed))
        assert sorted(out) == sorted(ids)
        pieces = {tuple(s) for s in ([10, 11, 99], [20, 99], [30, 31, 32, 99], [40])}
        text = out[:]
        for piece in sorted(pieces, key=len, reverse=True):
            assert any(tuple(text[i:i + len(piece)]) == piece for i in range(len(text)))
        seen.add(tuple(out))
    assert len(seen) > 5


def test_denoise_batch_targets_are_the_clean_windows():
    windows = torch.arange(100, 140).reshape(2, 20)
    batch = denoise_batch(windows, NoiseConfig(), TOKENS, gen())
    assert batch.labels[0, :18].tolist() == list(range(100, 118))
    assert batch.labels[0, 18].item() == TOKENS.eos_id
    assert (batch.src == MASK).any()


def test_denoise_objective_trains_an_encoder_decoder():
    torch.manual_seed(0)
    model = EncoderDecoder(ModelConfig(vocab_size=150, context_length=24, d_model=32,
                                       n_layers=1, encoder_layers=1, n_heads=4))
    objective = partial(denoise, tokens=TOKENS, generator=gen())
    loss, metrics = objective(model, torch.randint(4, 150, (2, 17)))
    loss.backward()
    assert torch.isfinite(loss) and model.tok_emb.weight.grad is not None


def test_denoising_without_a_mask_token_is_refused():
    with pytest.raises(ParrotError, match="<mask>"):
        denoise_batch(torch.zeros(1, 8, dtype=torch.long), NoiseConfig(),
                      Seq2SeqTokens(1, 2, 0), gen())


def test_parrot_train_pretrains_an_encoder_decoder_by_denoising(tmp_path):
    from parrot.training.runner import train
    from parrot.training.seq2seq import load_seq2seq

    text = tmp_path / "a.txt"
    text.write_text("\n".join(f"The cat {i} sat. A dog ran {i} times! Why?" for i in range(60)),
                    encoding="utf-8")
    result = train("seq2seq-tiny", tmp_path / "run", data=[text], show_progress=False,
                   overrides=["model.d_model=32", "model.n_layers=1", "model.encoder_layers=1",
                              "model.context_length=32", "train.steps=2", "train.batch_size=4",
                              "train.eval_every=2", "train.eval_iters=1", "data.vocab_size=300"])
    assert result.steps == 2 and result.final_val_loss is not None
    model, tokenizer, tokens = load_seq2seq(tmp_path / "run")
    assert isinstance(model, EncoderDecoder) and tokens.mask_id is not None


def test_denoise_needs_an_encoder_decoder_and_next_token_a_decoder(tmp_path):
    from parrot.training.runner import train

    with pytest.raises(ParrotError, match="denoise objective and encoder-decoder"):
        train("tiny", tmp_path / "a", overrides=["train.objective=denoise"],
              show_progress=False)
    with pytest.raises(ParrotError, match="denoise objective and encoder-decoder"):
        train("seq2seq-tiny", tmp_path / "b", overrides=["train.objective=next_token"],
              show_progress=False)
