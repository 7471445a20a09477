"""The engine through its public API: cached decode equals recompute, batching, reuse."""

import pytest
from infer_helpers import assert_matches_recompute, prompts, tiny_model

from parrot.errors import ParrotError
from parrot.infer import Engine, SamplingParams

GREEDY = SamplingParams(temperature=0.0, max_new_tokens=6, ignore_eos=True)

VARIANTS = {
    "learned": dict(positions="learned"),
    "sinusoidal": dict(positions="sinusoidal"),
    "rope": dict(positions="rope", norm="rmsnorm", mlp="swiglu", bias=False),
    "alibi": dict(positions="alibi"),
    "none": dict(positions="none"),
    "gqa-rope": dict(positions="rope", n_kv_heads=2),
    "mqa-alibi": dict(positions="alibi", n_kv_heads=1),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_cached_decode_equals_recompute_single(variant, byte_tok):
    model = tiny_model(**VARIANTS[variant])
    engine = Engine(model, byte_tok, max_batch=1)
    completion = engine.generate(prompts([9])[0], GREEDY, record_logits=True)
    assert len(completion.token_ids) == 6
    assert_matches_recompute(model, completion)


@pytest.mark.parametrize("variant", VARIANTS)
def test_cached_decode_equals_recompute_ragged_batch(variant, byte_tok):
    model = tiny_model(**VARIANTS[variant])
    # Three ragged prompts on two slots: the third reuses a freed slot, rows stay ragged.
    engine = Engine(model, byte_tok, max_batch=2)
    lengths = [3, 11, 7]
    params = [GREEDY.replace(max_new_tokens=n) for n in (4, 8, 5)]
    ids = [engine.submit(p, q, record_logits=True, collect=True)
           for p, q in zip(prompts(lengths), params, strict=True)]
    while engine.has_work():
        engine.step()
    for i in ids:
        assert_matches_recompute(model, engine.result(i))


def test_sampled_batch_decode_equals_recompute(byte_tok):
    model = tiny_model(positions="rope", n_kv_heads=2)
    engine = Engine(model, byte_tok, max_batch=4)
    params = SamplingParams(temperature=1.0, top_k=20, seed=3, max_new_tokens=7, ignore_eos=True)
    for completion in engine.generate_batch(prompts([2, 13, 5, 1]), params, record_logits=True):
        assert_matches_recompute(model, completion)


def test_request_joining_mid_decode_gets_its_solo_output(byte_tok):
    model = tiny_model(positions="rope")
    first, second = prompts([6, 10])
    solo = [Engine(model, byte_tok, max_batch=1).generate(p, GREEDY.replace(max_new_tokens=10))
            for p in (first, second)]
    engine = Engine(model, byte_tok, max_batch=2)
    a = engine.submit(first, GREEDY.replace(max_new_tokens=10), collect=True)
    for _ in range(4):
        engine.step()
    b = engine.submit(second, GREEDY.replace(max_new_tokens=10), collect=True)
    joined_while_a_ran, done = False, {}
    while engine.has_work():
        outputs = engine.step()
        done.update({i: c for i in (a, b) if (c := engine.result(i)) is not None})
        if any(o.request_id == b for o in outputs):
            joined_while_a_ran |= a not in done
    assert joined_while_a_ran
    assert done[a].token_ids == solo[0].token_ids
    assert done[b].token_ids == solo[1].token_ids


def test_follow_up_prompt_reuses_the_cached_prefix(byte_tok):
    model = tiny_model(positions="alibi")
    engine = Engine(model, byte_tok, max_batch=2)
    prompt = prompts([8])[0]
    first = engine.generate(prompt, GREEDY)
    follow = prompt + first.token_ids + [10, 20, 30]
    second = engine.generate(follow, GREEDY, record_logits=True)
    # Everything fed before is reused; the last generated token was never fed.
    assert second.stats.cached_tokens == len(prompt) + len(first.token_ids) - 1
    assert second.stats.prefill_tokens == 4
    assert_matches_recompute(model, second)


def test_diverging_prompt_recomputes_from_the_divergence(byte_tok):
    model = tiny_model(positions="learned")
    engine = Engine(model, byte_tok, max_batch=1)
    prompt = prompts([12])[0]
    engine.generate(prompt, GREEDY)
    changed = prompt[:5] + [(prompt[5] + 1) % 256] + prompt[6:]
    completion = engine.generate(changed, GREEDY, record_logits=True)
    assert completion.stats.cached_tokens == 5
    assert_matches_recompute(model, completion)


def test_stats_count_tokens_and_time(byte_tok):
    engine = Engine(tiny_model(), byte_tok, max_batch=1)
    stats = engine.generate(prompts([10])[0], GREEDY).stats
    assert (stats.prompt_tokens, stats.generated_tokens, stats.cached_tokens) == (10, 6, 0)
    assert stats.time_to_first_token_s > 0 and stats.total_s >= stats.time_to_first_token_s
    assert stats.prefill_tokens_per_s > 0 and stats.decode_tokens_per_s > 0


def test_full_context_stops_with_length(byte_tok):
    model = tiny_model()  # context 48
    completion = Engine(model, byte_tok).generate(
        prompts([45])[0], GREEDY.replace(max_new_tokens=20))
    # Positions 45, 46, 47 are fed; the 4th token needs position 48, which does not exist.
    assert len(completion.token_ids) == 4
    assert (completion.finish_reason, completion.stop_reason) == ("length", "context")


def test_prompt_longer_than_context_is_a_clear_error(byte_tok):
    engine = Engine(tiny_model(), byte_tok)
    with pytest.raises(ParrotError, match="49 tokens but the context holds 48"):
        engine.submit(prompts([49])[0], GREEDY)
    with pytest.raises(ParrotError, match="empty"):
        engine.submit([], GREEDY)


def test_truncation_keeps_the_end_of_the_prompt(byte_tok):
    engine = Engine(tiny_model(), byte_tok)
    prompt = prompts([100])[0]
    completion = engine.generate(prompt, GREEDY, truncate=True)
    assert completion.prompt_ids == prompt[-42:]  # 48 - min(6, 24)
    assert len(completion.token_ids) == 6


def test_eos_token_stops_and_is_not_shown(byte_tok, scripted):
    script = list(b"Hi there") + [256] + list(b"more")
    engine = Engine(scripted(script), byte_tok)
    completion = engine.generate(script[:2], SamplingParams(temperature=0, max_new_tokens=50))
    assert completion.text == " there"
    assert (completion.finish_reason, completion.stop_reason) == ("stop", 256)


def test_max_len_beyond_table_positions_is_rejected(byte_tok):
    for positions in ("learned", "rope"):  # a position table, or RoPE's of cos/sin
        with pytest.raises(ParrotError, match="exceeds the model's context"):
            Engine(tiny_model(positions=positions), byte_tok, max_len=100)
    assert Engine(tiny_model(positions="alibi"), byte_tok, max_len=100).max_len == 100


def test_idle_row_with_a_long_kept_prefix_stays_correct(byte_tok, monkeypatch):
    # Small buckets so the active row's view is shorter than the idle row's kept prefix.
    monkeypatch.setattr("parrot.infer.engine._BUCKET", 8)
    model = tiny_model(positions="rope")
    engine = Engine(model, byte_tok, max_batch=2)
    long_prompt, short_prompt = prompts([30, 3])
    a = engine.submit(long_prompt, GREEDY.replace(max_new_tokens=2), collect=True)
    b = engine.submit(short_prompt, GREEDY.replace(max_new_tokens=12), record_logits=True,
                      collect=True)
    while engine.has_work():
        engine.step()
    assert_matches_recompute(model, engine.result(b))
    # A's slot was cut while idle; its follow-up reuses what is left, and is still exact.
    follow = long_prompt + engine.result(a).token_ids + [7]
    completion = engine.generate(follow, GREEDY, record_logits=True)
    assert 0 < completion.stats.cached_tokens < 31
    assert_matches_recompute(model, completion)


def test_a_one_token_answer_has_sane_stats(byte_tok):
    engine = Engine(tiny_model(), byte_tok)
    stats = engine.generate(prompts([5])[0], GREEDY.replace(max_new_tokens=1)).stats
    assert stats.generated_tokens == 1 and stats.decode_tokens_per_s == 0.0
    assert 0 < stats.time_to_first_token_s <= stats.total_s


def test_text_prompts_get_bos_when_the_tokenizer_asks_for_it(byte_tok):
    """Gemma from GGUF sets add_bos: text prompts start with BOS exactly once."""
    engine = Engine(tiny_model(), byte_tok, max_batch=1)
    assert engine.encode("hi") == [104, 105]                 # no add_bos: unchanged
    byte_tok.bos_id, byte_tok.add_bos = 1, True
    assert engine.encode("hi") == [1, 104, 105]
    assert engine.encode("\x01hi") == [1, 104, 105]          # already there: not doubled
    assert engine.encode([104, 105]) == [104, 105]           # ids are taken as given


def test_a_batch_of_mixed_params_gives_each_request_its_solo_tokens(byte_tok):
    """One sampling call per step serves rows with different params, seeds and penalties."""
    model = tiny_model(positions="rope")
    params = [GREEDY.replace(max_new_tokens=8),
              SamplingParams(temperature=0.9, top_k=30, seed=4, max_new_tokens=8, ignore_eos=True),
              SamplingParams(temperature=1.2, top_p=0.7, repetition_penalty=1.5,
                             presence_penalty=0.5, seed=5, max_new_tokens=8, ignore_eos=True),
              GREEDY.replace(max_new_tokens=8, frequency_penalty=2.0)]
    batch = prompts([5, 9, 3, 7])
    solo = [Engine(model, byte_tok, max_batch=1).generate(p, q).token_ids
            for p, q in zip(batch, params, strict=True)]
    engine = Engine(model, byte_tok, max_batch=4)
    ids = [engine.submit(p, q, collect=True) for p, q in zip(batch, params, strict=True)]
    while engine.has_work():
        engine.step()
    assert [engine.result(i).token_ids for i in ids] == solo


def test_a_cache_view_is_the_engine_cache_cut_to_a_bucket(byte_tok, monkeypatch):
    monkeypatch.setattr("parrot.infer.engine._BUCKET", 8)
    engine = Engine(tiny_model(), byte_tok, max_batch=3)
    view = engine.cache_view(1, 3, 10)  # rows 1 and 2; 10 positions round up to 16
    assert (view.keys.shape[1], view.keys.shape[3]) == (2, 16)
    view.keys.fill_(1.0)  # a view: writes land in the engine's cache
    assert bool(engine.cache.keys[:, 1:3, :, :16].eq(1).all())
    assert not bool(engine.cache.keys[:, 0].any()) and not bool(engine.cache.keys[:, 1:, :, 16:].any())


def test_a_result_is_handed_over_once(byte_tok):
    engine = Engine(tiny_model(), byte_tok, max_batch=1)
    request = engine.submit(prompts([4])[0], GREEDY, collect=True)
    assert engine.result(request) is None  # still queued
    while engine.has_work():
        engine.step()
    assert len(engine.result(request).token_ids) == 6 and engine.result(request) is None


def test_a_failed_admission_puts_the_other_requests_back_in_the_queue(byte_tok):
    model = tiny_model()
    first, second = prompts([5, 6])
    solo = Engine(model, byte_tok, max_batch=1).generate(first, GREEDY).token_ids
    engine = Engine(model, byte_tok, max_batch=2)
    prefill, calls = engine.steps.prefill, []

    def fail_on_the_second(index, request):
        calls.append(request.request_id)
        if len(calls) == 2:
            raise RuntimeError("out of memory")
        return prefill(index, request)

    engine.steps.prefill = fail_on_the_second
    a = engine.submit(first, GREEDY, collect=True)
    engine.submit(second, GREEDY, collect=True)
    with pytest.raises(RuntimeError):
        engine.step()
    assert [r.request_id for r in engine.queue] == [a]
    while engine.has_work():
        engine.step()
    assert engine.result(a).token_ids == solo


def test_generate_batch_takes_one_sampling_set_per_prompt(byte_tok):
    model = tiny_model(positions="rope")
    params = [SamplingParams(temperature=1.0, max_new_tokens=6, seed=s, ignore_eos=True)
              for s in (1, 2, 1)]
    batch = prompts([5, 5, 5])
    solo = [Engine(model, byte_tok, max_batch=1).generate(p, q).token_ids
            for p, q in zip(batch, params, strict=True)]
    together = Engine(model, byte_tok, max_batch=4).generate_batch(batch, params)
    assert [c.token_ids for c in together] == solo
    with pytest.raises(ParrotError, match="one per prompt"):
        Engine(model, byte_tok, max_batch=4).generate_batch(batch[:2], params)
