"""Log-probabilities: the pure functions against a hand computation, and the engine's
per-token values against the logits it recorded."""

import math

import pytest
import torch
from infer_helpers import ByteTokenizer, tiny_model

from parrot.infer import Engine, SamplingParams
from parrot.infer.logprobs import prompt_logprobs, token_logprobs


def test_token_logprobs_match_the_formula_and_rank_the_top():
    logits = torch.tensor([[1.0, 3.0, 2.0], [0.0, 0.0, math.log(2.0)]])
    scored = token_logprobs(logits, [2, 0], top=2)
    z = math.log(math.exp(1) + math.exp(3) + math.exp(2))
    assert scored[0].logprob == pytest.approx(2 - z, abs=1e-6)
    assert [i for i, _ in scored[0].top] == [1, 2]
    assert scored[0].top[0][1] == pytest.approx(3 - z, abs=1e-6)
    assert scored[1].logprob == pytest.approx(math.log(1 / 4), abs=1e-6)
    assert token_logprobs(logits, [0, 1], top=0)[0].top == ()


def test_prompt_logprobs_score_each_token_from_the_previous_position():
    model = tiny_model()
    ids = [5, 17, 200, 3, 99]
    scored = prompt_logprobs(model, ids, top=3)
    assert scored[0] is None
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids]))[0], dim=-1)
    for t in range(1, len(ids)):
        assert scored[t].token_id == ids[t]
        assert scored[t].logprob == pytest.approx(logp[t - 1, ids[t]].item(), abs=1e-5)
        assert scored[t].top[0][1] == pytest.approx(logp[t - 1].max().item(), abs=1e-5)


def test_engine_reports_logprobs_of_the_raw_logits_each_token_was_drawn_from():
    model = tiny_model()
    engine = Engine(model, ByteTokenizer(), max_batch=2)
    params = SamplingParams(temperature=0.7, seed=3, max_new_tokens=6, ignore_eos=True)
    rid = engine.submit([1, 2, 3, 4], params, record_logits=True, collect=True, logprobs=2)
    outputs = []
    while engine.has_work():
        outputs += [o for o in engine.step() if o.request_id == rid]
    completion = outputs[-1].completion
    expected = torch.log_softmax(completion.logits, dim=-1)
    for t, out in enumerate(outputs):
        assert out.logprobs.token_id == out.token_id
        assert out.logprobs.logprob == pytest.approx(expected[t, out.token_id].item(), abs=1e-5)
        assert len(out.logprobs.top) == 2


def test_engine_leaves_logprobs_out_unless_asked():
    engine = Engine(tiny_model(), ByteTokenizer(), max_batch=1)
    engine.submit([1, 2], SamplingParams(temperature=0, max_new_tokens=2))
    assert all(o.logprobs is None for o in engine.step())
