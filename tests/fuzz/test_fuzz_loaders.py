"""Every loader under a fixed fuzzing budget: only a ParrotError escapes, no input takes 10
s, and headers that claim 2^60 elements allocate nothing. benchmarks/fuzz_loaders.py runs
the same targets for long; every bug either found is pinned by a case below."""

import json
import random
import struct
import tempfile
from functools import cache
from pathlib import Path

import pytest
from fuzz_targets import LIMIT_GROWTH_BYTES, TARGETS, RuleBroken, mutate, rss_bytes, run_one
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parrot.errors import ParrotError

BUDGET = settings(max_examples=20, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))


@cache
def seed(name: str) -> bytes:
    """The target's valid input, loaded once (the first meta-device build imports sympy
    through torch, ~10 s on a busy box: a one-off cost, not the input's)."""
    data = TARGETS[name].seed()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            run_one(TARGETS[name], data, Path(tmp))
        except RuleBroken as err:
            if "took" not in str(err):  # only the one-off import may be slow
                raise
    return data


@pytest.mark.parametrize("name", sorted(TARGETS))
@BUDGET
@given(edits=st.integers(0, 2**32 - 1), rounds=st.integers(1, 4))
def test_mutated_inputs_only_ever_raise_parrot_error(name, edits, rounds):
    rng, data = random.Random(edits), seed(name)
    for _ in range(rounds):
        data = mutate(TARGETS[name], data, rng)
    with tempfile.TemporaryDirectory() as tmp:
        assert run_one(TARGETS[name], data, Path(tmp)) in ("ok", "refused")


@pytest.mark.parametrize("name", ["gguf", "safetensors", "tokenizer_bpe", "sft_jsonl", "image_png",
                                  "document_pdf"])
@BUDGET
@given(data=st.binary(max_size=512))
def test_arbitrary_bytes_only_ever_raise_parrot_error(name, data):
    with tempfile.TemporaryDirectory() as tmp:
        assert run_one(TARGETS[name], data, Path(tmp)) in ("ok", "refused")


def gguf_header(n_tensors: int, n_kv: int, body: bytes = b"") -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv) + body


def gguf_string(text: bytes, length: int | None = None) -> bytes:
    return struct.pack("<Q", len(text) if length is None else length) + text


HOSTILE_GGUF = {
    "2^60 tensors": gguf_header(2**60, 0),
    "2^60 metadata entries": gguf_header(0, 2**60),
    "a 2^60-byte key": gguf_header(0, 1, gguf_string(b"k", 2**60)),
    "an array of 2^60 u64": gguf_header(0, 1, gguf_string(b"k") + struct.pack("<IIQ", 9, 10,
                                                                               2**60)),
    "an array of 2^60 strings": gguf_header(0, 1, gguf_string(b"k") + struct.pack("<IIQ", 9, 8,
                                                                                   2**60)),
    "2^60 nested arrays": gguf_header(0, 1, gguf_string(b"k") + struct.pack("<IIQ", 9, 9, 2**60)),
    "a tensor of 2^60 x 2^60 weights": gguf_header(1, 0, gguf_string(b"t") + struct.pack(
        "<IQQIQ", 2, 2**60, 2**60, 0, 0)),
    "a tensor whose int64 size wraps negative": gguf_header(1, 0, gguf_string(b"t") + struct.pack(
        "<IQQIQ", 2, 2**62, 4, 0, 0)),
    "alignment 0": gguf_header(0, 1, gguf_string(b"general.alignment") + struct.pack("<II", 4, 0)),
    "an empty file": b"",
}


@pytest.mark.parametrize("case", sorted(HOSTILE_GGUF))
def test_hostile_gguf_headers_are_refused_without_allocating(case, tmp_path):
    before = rss_bytes()
    assert run_one(TARGETS["gguf"], HOSTILE_GGUF[case], tmp_path) == "refused"
    assert rss_bytes() - before < LIMIT_GROWTH_BYTES


def safetensors_file(header: dict, payload: bytes = b"\0" * 16) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + payload


HOSTILE_SAFETENSORS = {
    "2^60 elements": safetensors_file({"w": {"dtype": "F32", "shape": [2**30, 2**30],
                                             "data_offsets": [0, 16]}}),
    "offsets past the end": safetensors_file({"w": {"dtype": "F32", "shape": [2**28],
                                                    "data_offsets": [0, 2**30]}}),
    "a header length of 2^60": struct.pack("<Q", 2**60) + b"{}",
    "a header that is not JSON": struct.pack("<Q", 4) + b"\xff\xfe{[",
}


@pytest.mark.parametrize("case", sorted(HOSTILE_SAFETENSORS))
def test_hostile_safetensors_headers_are_refused_without_allocating(case, tmp_path):
    before = rss_bytes()
    assert run_one(TARGETS["safetensors"], HOSTILE_SAFETENSORS[case], tmp_path) == "refused"
    assert rss_bytes() - before < LIMIT_GROWTH_BYTES


def _with(seed_bytes: bytes, change) -> bytes:
    doc = json.loads(seed_bytes)
    change(doc)
    return json.dumps(doc).encode()


def test_a_run_config_claiming_a_huge_model_allocates_nothing(tmp_path):
    before = rss_bytes()
    for field, value in [("n_layers", 2**31), ("vocab_size", 2**40), ("context_length", 2**40),
                         ("d_model", 2**33)]:
        data = _with(seed("config_json"), lambda d, f=field, v=value: d["model"].update({f: v}))
        assert run_one(TARGETS["config_json"], data, tmp_path) == "refused", field
    assert rss_bytes() - before < LIMIT_GROWTH_BYTES


def test_a_run_config_whose_weights_do_not_fit_is_one_sentence(tmp_path):
    # the seed's model.safetensors holds one unrelated tensor: refused before building
    with pytest.raises(ParrotError, match="does not fit the model"):
        TARGETS["config_json"].load(seed("config_json"), tmp_path)


@pytest.mark.parametrize("change", [
    lambda d: d["model"].update({"unk_token": 7}),
    lambda d: d["model"].update({"continuing_subword_prefix": None}),
    lambda d: d.update({"added_tokens": [{"id": 0, "content": ["x"]}]}),
    lambda d: d["model"]["vocab"].update({"zzz": 2**60}),
])
def test_wordpiece_files_with_wrong_field_types_are_refused(change, tmp_path):
    data = _with(seed("tokenizer_wordpiece"), change)
    assert run_one(TARGETS["tokenizer_wordpiece"], data, tmp_path) == "refused"


@pytest.mark.parametrize("change", [
    lambda d: d["model"]["vocab"].update({"zzz": 2**60}),  # by_id would allocate 2^60 slots
    lambda d: d["model"]["vocab"].update({"zzz": -3}),
    lambda d: d.update({"added_tokens": [{"id": 1, "content": 5, "special": True}]}),
])
def test_sentencepiece_files_with_impossible_ids_are_refused(change, tmp_path):
    data = _with(seed("tokenizer_sentencepiece"), change)
    assert run_one(TARGETS["tokenizer_sentencepiece"], data, tmp_path) == "refused"


@pytest.mark.parametrize("change", [
    lambda d: d.update({"model_type": {"a": 1}}),
    lambda d: d.update({"hidden_size": "wide"}),
    lambda d: d.update({"rms_norm_eps": "<|im_start|>"}),
    lambda d: d.update({"num_attention_heads": 0}),
    lambda d: d.update({"num_hidden_layers": 2**31}),
])
def test_hugging_face_configs_with_wrong_values_are_refused(change, tmp_path):
    data = _with(seed("hf_config_json"), change)
    assert run_one(TARGETS["hf_config_json"], data, tmp_path) == "refused"


@pytest.mark.parametrize("messages", [None, 3, "hi", [None], [{"role": 1}], [{"role": "user"}]])
def test_chat_messages_of_the_wrong_shape_are_refused(messages, tmp_path):
    data = json.dumps({"messages": messages}).encode()
    assert run_one(TARGETS["chat_messages"], data, tmp_path) == "refused"


def test_deeply_nested_json_is_refused_everywhere(tmp_path):
    deep = b"[" * 100_000 + b"]" * 100_000
    for name in ("config_json", "hf_config_json", "tokenizer_bpe", "chat_messages",
                 "sft_jsonl"):
        assert run_one(TARGETS[name], deep, tmp_path) == "refused", name


def test_a_jsonl_document_nested_too_deep_is_skipped_with_a_warning(tmp_path):
    """Found by the long fuzz run: json.loads raised RecursionError out of the reader."""
    from parrot.rag.documents import read_documents

    path = tmp_path / "deep.jsonl"
    path.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    warnings: list[str] = []
    [(_, _, text)] = list(read_documents([path], warnings.append))
    assert text is None and "nested too deeply" in warnings[0]
