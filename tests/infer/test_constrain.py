"""Constrained decoding: every sampled document parses and matches its schema, masks equal a
token-by-token check, the budget is respected, and unconstrained rows are left alone."""

import json
import random
import re

import jsonschema
import pytest
import torch
from infer_helpers import EOS, ByteTokenizer, tiny_model

from parrot.errors import ParrotError
from parrot.infer import Engine, SamplingParams
from parrot.infer.constrain import Grammars, JsonGrammar
from parrot.infer.json_schema import compile_schema

# A vocabulary with every byte plus multi-byte pieces a real BPE has: structure, keys,
# half a UTF-8 character, and a token that closes a string and opens the next key.
PIECES = [b'{"', b'":', b'",', b'"}', b'name', b' "', b'true', b'\xe2\x82', b'\xac', b'12',
          b'.5', b'", "', b'null', b'[]', b'\\n', b'"]}']
VOCAB = [bytes([i]) for i in range(256)] + PIECES
EOS_ID = len(VOCAB)
WIDTH = EOS_ID + 3  # the model's logits are wider than the vocabulary

SCHEMAS = [
    {"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"},
        "score": {"type": "number"}, "ok": {"type": "boolean"},
        "tags": {"type": "array", "items": {"enum": ["a", "b c", 3]}, "maxItems": 3},
        "note": {"type": ["string", "null"]}}, "required": ["name", "age"]},
    {"type": "object"},
    {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 4},
    {"anyOf": [{"type": "integer"}, {"type": "string", "minLength": 2, "maxLength": 3}]},
    {"type": "object", "properties": {"answer": {"const": 42}, "unit": {"type": "string"}},
     "required": ["answer", "unit"], "additionalProperties": False},
    {"type": "object", "properties": {"inner": {"type": "object", "properties": {
        "x": {"type": "number"}}, "required": ["x"]}}, "required": ["inner"]},
]


def _grammar(schema):
    return JsonGrammar(schema, VOCAB + [None], WIDTH, [EOS_ID])


def _sample(grammar, rng, budget):
    """A random walk over the allowed tokens (uniform: far harsher than a model)."""
    from parrot.infer.constrain import JsonCursor
    cursor, out = JsonCursor(grammar, lambda i: VOCAB[i]), b""
    for used in range(budget):
        allowed = cursor.allowed(budget - used).nonzero().flatten().tolist()
        assert allowed, f"no token allowed after {out!r}"
        token = rng.choice(allowed)
        if token == EOS_ID:
            break
        cursor.advance(token)
        out += VOCAB[token]
    return out


@pytest.mark.parametrize("index", range(len(SCHEMAS)))
def test_random_walks_always_parse_and_match(index):
    schema, rng = SCHEMAS[index], random.Random(index)
    grammar = _grammar(schema)
    for _ in range(40):
        text = _sample(grammar, rng, budget=rng.randint(40, 120))
        jsonschema.validate(json.loads(text.decode("utf-8")), schema)


def test_a_document_cut_short_by_the_budget_is_still_complete():
    grammar, rng = _grammar(SCHEMAS[0]), random.Random(7)
    minimum = len(grammar.completion(grammar.start()))
    for budget in range(minimum, minimum + 10):
        jsonschema.validate(json.loads(_sample(grammar, rng, budget)), SCHEMAS[0])


def test_the_mask_equals_checking_every_token_alone():
    grammar = _grammar(SCHEMAS[0])
    for prefix in [b"", b'{"na', b'{"name":"ab\\', b'{"name":"x\xe2\x82', b'{"name":"","age":1',
                   b'{"name":"","age":12,"tags":["a",', b'{"name":"","age":-']:
        state = grammar.step(grammar.start(), prefix)
        assert state, prefix
        expected = torch.zeros(WIDTH, dtype=torch.bool)
        for token_id, piece in enumerate(VOCAB):
            expected[token_id] = bool(grammar.step(state, piece))
        expected[EOS_ID] = grammar.complete(state)
        assert torch.equal(grammar.mask(state), expected), prefix


def test_invalid_utf8_cannot_be_written_inside_a_string():
    grammar = _grammar({"type": "string"})
    state = grammar.step(grammar.start(), b'"')
    for bad in (b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf5", b"\xe2\x82("):
        assert not grammar.step(state, bad), bad
    assert grammar.step(state, "€😀".encode())


def test_only_the_schemas_whitespace_is_allowed():
    grammar = _grammar({"type": "object", "properties": {"a": {"type": "integer"}}})
    assert grammar.step(grammar.start(), b'{"a": 1}')
    assert not grammar.step(grammar.start(), b'{ "a":1}')
    assert not grammar.step(grammar.start(), b'{"a":  1}')


@pytest.mark.parametrize("schema, keyword", [
    ({"type": "string", "pattern": "^a+$"}, "pattern"),
    ({"type": "integer", "minimum": 3}, "minimum"),
    ({"$ref": "#/defs/x"}, "$ref"),
    ({"type": "object", "properties": {"a": {"type": "string", "format": "email"}}}, "format"),
])
def test_an_unsupported_keyword_is_named(schema, keyword):
    with pytest.raises(ParrotError, match=re.escape(f"keyword {keyword!r}")):
        compile_schema(schema)


def test_an_unknown_type_is_refused():
    with pytest.raises(ParrotError, match="type 'text'"):
        compile_schema({"type": "text"})


def test_the_engine_constrains_one_row_and_leaves_the_others_alone():
    tokenizer = ByteTokenizer()
    model = tiny_model(seed=3)
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    params = SamplingParams(temperature=0.0, max_new_tokens=24)
    alone = Engine(model, tokenizer, max_batch=2).generate("hello", params)
    engine = Engine(model, tokenizer, max_batch=2)
    free = engine.submit("hello", params, collect=True)
    bound = engine.submit("hello", params, collect=True, json_schema=schema)
    while engine.has_work():
        engine.step()
    assert engine.result(free).token_ids == alone.token_ids
    jsonschema.validate(json.loads(engine.result(bound).text), schema)


def test_the_engine_samples_valid_documents_at_temperature_one():
    engine = Engine(tiny_model(seed=1), ByteTokenizer(), max_batch=4)
    schema = SCHEMAS[0]
    prompts = ["a", "b", "c", "d"]
    for seed in range(3):
        params = SamplingParams(temperature=1.0, max_new_tokens=40, seed=seed)
        for completion in engine.generate_batch(prompts, params, json_schema=schema):
            jsonschema.validate(json.loads(completion.text), schema)


def test_special_tokens_are_never_allowed_inside_a_document():
    class WithSpecial(ByteTokenizer):
        special_tokens = {"<|eos|>": EOS}
    grammars = Grammars(WithSpecial(), 262, {EOS})
    assert grammars.token_bytes()[EOS] is None
    cursor = grammars.cursor({"type": "string"})
    cursor.advance(ord('"'))
    assert not cursor.allowed(50)[EOS]


def test_a_trigger_leaves_text_free_until_it_appears():
    from parrot.infer.constrain import JsonCursor
    grammar = _grammar({"type": "object", "properties": {"a": {"type": "integer"}},
                        "required": ["a"]})
    cursor = JsonCursor(grammar, lambda i: VOCAB[i], trigger="<tool_call>")
    for byte in b"Let me check. <tool_call>":
        assert cursor.allowed(50) is None
        cursor.advance(byte)
    allowed = cursor.allowed(50)
    assert allowed is not None and allowed[ord("{")] and not allowed[ord("\n")]
    for byte in b'{"a":7}':
        assert cursor.allowed(50)[byte]
        cursor.advance(byte)
    assert cursor.allowed(50)[EOS_ID] and cursor.allowed(50).sum() == 1
