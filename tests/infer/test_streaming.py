"""Streaming text: equal to the non-streamed answer, no split characters, no stop leaks."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from infer_helpers import prompts, tiny_model

from parrot.infer import Engine, SamplingParams
from parrot.infer.stopping import StopChecker, StopStringMatcher, longest_prefix_suffix
from parrot.infer.streaming import IncrementalDetokenizer


def test_stream_equals_generate_for_the_same_seed(byte_tok):
    model = tiny_model(positions="rope")
    params = SamplingParams(temperature=1.2, top_p=0.95, seed=11, max_new_tokens=30,
                            ignore_eos=True)
    prompt = prompts([5])[0]
    stream = Engine(model, byte_tok).stream(prompt, params)
    streamed = "".join(stream)
    completion = Engine(model, byte_tok).generate(prompt, params)
    assert streamed == completion.text
    assert stream.completion.token_ids == completion.token_ids
    assert completion.text == byte_tok.decode(completion.token_ids)


def test_multibyte_character_split_across_tokens_streams_intact(byte_tok, scripted):
    # 257 and 258 each hold half of the parrot emoji; "é" is two byte tokens.
    script = list(b"Hi ") + [257, 258] + list(" café".encode()) + [256]
    deltas = list(Engine(scripted(script), byte_tok).stream(script[:1], SamplingParams(0)))
    assert "".join(deltas) == "i 🦜 café"
    assert all("\ufffd" not in d for d in deltas)
    assert "🦜" in deltas  # released whole, in one delta, once its second half arrived


def test_stop_string_split_across_tokens_never_leaks(byte_tok, scripted):
    # "<ST" and "OP>" are separate tokens; the visible text must end before "<STOP>".
    script = list(b"Say ") + list(b"hello") + [259, 260] + list(b" secret") + [256]
    params = SamplingParams(temperature=0, stop=("<STOP>",))
    stream = Engine(scripted(script), byte_tok).stream(script[:4], params)
    seen = ""
    for delta in stream:
        seen += delta
        assert "<" not in seen
    assert seen == "hello"
    assert (stream.completion.finish_reason, stream.completion.stop_reason) == ("stop", "<STOP>")


def test_held_back_text_is_released_when_the_stop_string_does_not_follow(byte_tok, scripted):
    script = list(b"> a<ST!") + [256]
    completion = Engine(scripted(script), byte_tok).generate(
        script[:2], SamplingParams(temperature=0, stop=("<STOP>",)))
    assert completion.text == "a<ST!"


def test_held_back_prefix_is_released_at_max_tokens(byte_tok, scripted):
    script = list(b"> a<STOP>")
    completion = Engine(scripted(script), byte_tok).generate(
        script[:2], SamplingParams(temperature=0, stop=("<STOP>",), max_new_tokens=3))
    assert completion.text == "a<S" and completion.finish_reason == "length"


def test_longest_prefix_suffix():
    assert longest_prefix_suffix("Hello\nUs", ["\nUser:"]) == 3
    assert longest_prefix_suffix("Hello", ["\nUser:"]) == 0
    assert longest_prefix_suffix("ab<", ["<x>", "b<y"]) == 2


def test_matcher_finds_the_earliest_of_several_stops():
    matcher = StopStringMatcher(["END", "ST"])
    assert matcher.push("one S") == ("one ", False)
    assert matcher.push("T and END") == ("", True)  # "ST" began in the held-back "S"
    assert matcher.matched == "ST"


@given(st.binary(max_size=40), st.lists(st.integers(1, 4), max_size=40))
def test_incremental_decoding_equals_whole_decoding(data, cuts):
    pieces, i = [], 0
    for n in cuts:
        pieces.append(data[i : i + n])
        i += n
    pieces.append(data[i:])
    detok = IncrementalDetokenizer(lambda k: pieces[k])
    text = "".join(detok.push(k) for k in range(len(pieces))) + detok.flush()
    assert text == data.decode("utf-8", errors="replace")


@given(st.text(alphabet="ab<STOP>x", max_size=30))
def test_stop_checker_output_is_the_text_before_the_first_stop(text):
    tokens = list(text.encode())
    params = SamplingParams(stop=("<STOP>", "xx"), max_new_tokens=max(1, len(tokens)))
    checker = StopChecker(params, [], lambda t: bytes([t]), 1, 10_000)
    shown, finish = "", None
    for t in tokens:
        delta = checker.push(t)
        shown += delta.text
        if delta.finish_reason:
            finish = delta.finish_reason
            break
    cuts = [i for i in (text.find("<STOP>"), text.find("xx")) if i >= 0]
    assert shown == (text[: min(cuts)] if cuts else text)
    if tokens:
        assert finish == ("stop" if cuts else "length")


@pytest.mark.parametrize("reason", ["eos", "stop_id"])
def test_stop_token_ids(reason):
    params = SamplingParams(stop_token_ids=(7,) if reason == "stop_id" else ())
    checker = StopChecker(params, [9] if reason == "eos" else [], lambda t: b"x", 1, 100)
    assert checker.push(1).finish_reason is None
    delta = checker.push(9 if reason == "eos" else 7)
    assert (delta.text, delta.finish_reason) == ("", "stop")


def test_closing_a_stream_early_cancels_and_frees_the_slot(byte_tok):
    model = tiny_model(positions="rope")
    engine = Engine(model, byte_tok, max_batch=1)
    params = SamplingParams(temperature=0, max_new_tokens=20, ignore_eos=True)
    prompt = prompts([6])[0]
    stream = engine.stream(prompt, params)
    next(stream)
    stream.close()
    assert not engine.has_work() and stream.completion is None
    completion = engine.generate(prompt, params)
    assert completion.stats.cached_tokens == len(prompt) - 1
    assert completion.token_ids == Engine(model, byte_tok).generate(prompt, params).token_ids
