"""The RNN lesson: additive attention is a distribution over the source, the fixed-vector
model reads only the encoder's final state, and both train through the shared loop."""

import json

import pytest
import torch

from parrot.model.rnn import Encoded, RNNConfig, additive_attention, build_rnn
from parrot.training.config import TrainConfig
from parrot.training.rnn_lesson import (
    by_length,
    dictionary,
    token_accuracy,
    toy_pairs,
    train_gru,
    translate,
)


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, 30, (3, 9), generator=g)
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1, 6:] = False
    mask[2, 3:] = False
    return src, mask, torch.randint(4, 30, (3, 5), generator=g)


def _model(attention):
    torch.manual_seed(0)
    return build_rnn(RNNConfig(vocab_size=30, d_embed=8, d_hidden=12, attention=attention)).eval()


def test_attention_weights_sum_to_one_over_the_real_source_tokens():
    model = _model(True)
    src, mask, tgt = _batch()
    capture = []
    with torch.no_grad():
        model(src, tgt, mask, capture=capture)
    alpha = capture[0]                                                   # (B, T, S)
    assert alpha.shape == (3, 5, 9)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(3, 5))
    assert alpha[1, :, 6:].abs().max() == 0 and alpha[2, :, 3:].abs().max() == 0


def test_additive_attention_is_the_formula():
    g = torch.Generator().manual_seed(1)
    state, ann = torch.randn(2, 3, 4, generator=g), torch.randn(2, 5, 6, generator=g)
    w_s, w_h, v = torch.nn.Linear(4, 3), torch.nn.Linear(6, 3), torch.nn.Linear(3, 1)
    mask = torch.ones(2, 5, dtype=torch.bool)
    context, alpha = additive_attention(state, w_h(ann), ann, mask, w_s, v)
    e = torch.tensor([[[v(torch.tanh(w_s(state[b, i]) + w_h(ann[b, j])))[0].item()
                        for j in range(5)] for i in range(3)] for b in range(2)])
    expected = torch.softmax(e, -1)
    torch.testing.assert_close(alpha, expected)
    torch.testing.assert_close(context, expected @ ann)


def test_greedy_steps_equal_teacher_forcing():
    from parrot.model.rnn import greedy_decode

    for attention in (False, True):
        model = _model(attention)
        src, mask, _ = _batch()
        ids, alpha = greedy_decode(model, src, mask, start_id=1, eos_id=999, max_len=4)
        tgt_in = torch.tensor([[1, *row[:3]] for row in ids])
        with torch.no_grad():
            logits = model(src, tgt_in, mask)
        assert logits.argmax(-1).tolist() == ids
        if attention:
            capture = []
            with torch.no_grad():
                model(src, tgt_in, mask, capture=capture)
            torch.testing.assert_close(alpha, capture[0])


def test_the_fixed_vector_model_sees_only_the_final_state():
    src, mask, tgt = _batch()
    for attention, same in ((False, True), (True, False)):
        model = _model(attention)
        with torch.no_grad():
            enc = model.encode(src, mask)
            noise = Encoded(torch.randn_like(enc.annotations), mask, enc.final)
            a, b = model.decode(enc, tgt), model.decode(noise, tgt)
        assert torch.equal(a, b) == same


def test_the_encoder_final_state_ignores_padding():
    model = _model(False)
    src, mask, _ = _batch()
    with torch.no_grad():
        full = model.encode(src[2:3, :3], mask[2:3, :3]).final
        padded = model.encode(src[2:3], mask[2:3]).final
    torch.testing.assert_close(full, padded)


def test_the_toy_task_maps_and_swaps_adjacent_letters():
    words = dictionary(0)
    assert translate("abcde", words) == words["b"] + words["a"] + words["d"] + words["c"] + words["e"]
    pairs = toy_pairs(50, seed=3)
    assert pairs == toy_pairs(50, seed=3) and pairs != toy_pairs(50, seed=4)
    assert all(5 <= len(p["source"]) <= 80 for p in pairs)


def test_token_accuracy_and_length_buckets():
    from parrot.data.pairs import Pair

    assert token_accuracy("ABCD", "ABXD") == 0.75 and token_accuracy("AB", "ABCD") == 0.5
    pairs = [Pair("a" * 6, "XY", "1"), Pair("a" * 20, "XY", "2")]
    rows = by_length(pairs, ["XY", "XZ"], [5, 15, 25])
    assert [(r["exact_match"], r["token_accuracy"]) for r in rows] == [(1.0, 1.0), (0.0, 0.5)]


@pytest.mark.parametrize("attention", [True])
def test_a_gru_trains_through_the_shared_loop_and_loads_back(tmp_path, attention):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(p) + "\n" for p in toy_pairs(40, 0, 5, 12)))
    train = TrainConfig(steps=4, batch_size=4, eval_every=2, eval_iters=1, checkpoint_every=2,
                        log_every=1, warmup=0)
    cfg = RNNConfig(vocab_size=1, d_embed=8, d_hidden=8, attention=attention)
    result = train_gru(tmp_path / "run", pairs, cfg, train.replace(steps=2), show_progress=False)
    assert result.steps == 2 and "val_exact_match" in result.metrics
    from parrot.rundir import load_model

    model, _, config = load_model(tmp_path / "run")
    assert config.attention is attention and model.config.vocab_size == 260
