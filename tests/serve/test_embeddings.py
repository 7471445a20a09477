"""POST /v1/embeddings through the `openai` client equals `parrot embed`."""

import base64
import io
import json

import numpy as np
import pytest
import requests
import torch
from encoder_helpers import minilm_dir
from serve_helpers import serve

from parrot.cli import main
from parrot.hub.hf import export_hf
from parrot.model import ModelConfig, Transformer
from parrot.tokenizer import WordPieceTokenizer
from parrot.tokenizer.wordpiece import WordPieceParts

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "dog", "sat", "on",
         "a", "mat", ".", "##s"]
TEXTS = ["the cat sat on a mat.", "dogs", "the dog"]


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory):
    """A tiny random BERT written as a Hugging Face folder (as `parrot export` does)."""
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=len(VOCAB), context_length=32, d_model=16, n_layers=1,
                      n_heads=2, norm_placement="post", norm_eps=1e-12, causal=False,
                      type_vocab_size=2, embed_norm=True, head_transform=True)
    specials = {s: i for i, s in enumerate(VOCAB[:5])}
    tok = WordPieceTokenizer(WordPieceParts(VOCAB, specials))
    return export_hf(Transformer(cfg), tok, tmp_path_factory.mktemp("bert") / "tiny-bert")


@pytest.fixture(scope="module")
def embed_server(run_dir, bert_folder):
    live = serve(run_dir, max_batch=2, max_queue=4, api_key=None,
                 embedding_model=str(bert_folder))
    yield live
    live.stop()


def openai_client(server):
    from openai import OpenAI

    return OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def cli_embed(capsys, monkeypatch, model, texts):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["embed", str(model), *texts, "--json"]) == 0
    return np.array(json.loads(capsys.readouterr().out)["embeddings"], dtype=np.float32)


def as_array(embedding):
    """A float list, or the base64 string the client passes through when asked for it."""
    if isinstance(embedding, str):
        return np.frombuffer(base64.b64decode(embedding), dtype="<f4")
    return np.array(embedding, dtype=np.float32)


# None: the client's default, which asks for base64 and decodes it itself.
@pytest.mark.parametrize("encoding_format", [None, "float", "base64"])
def test_openai_client_embeddings_equal_parrot_embed(embed_server, bert_folder, capsys,
                                                     monkeypatch, encoding_format):
    extra = {"encoding_format": encoding_format} if encoding_format else {}
    result = openai_client(embed_server).embeddings.create(model="tiny-bert", input=TEXTS,
                                                           **extra)
    got = np.stack([as_array(d.embedding) for d in result.data])
    np.testing.assert_allclose(got, cli_embed(capsys, monkeypatch, bert_folder, TEXTS),
                               atol=1e-6)
    assert [d.index for d in result.data] == [0, 1, 2]
    assert result.usage.prompt_tokens == result.usage.total_tokens > 0


def test_the_client_default_is_base64_of_little_endian_float32(embed_server):
    body = {"model": "tiny-bert", "input": "the cat", "encoding_format": "base64"}
    raw = requests.post(embed_server.url + "/v1/embeddings", json=body, timeout=60).json()
    floats = requests.post(embed_server.url + "/v1/embeddings",
                           json={**body, "encoding_format": "float"}, timeout=60).json()
    decoded = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_array_equal(decoded, np.array(floats["data"][0]["embedding"], "<f4"))
    assert raw["object"] == "list" and raw["data"][0]["object"] == "embedding"


@pytest.mark.parametrize("body, status, fragment", [
    ({"model": "other", "input": "x"}, 404, "does not exist"),
    ({"model": "tiny-bert", "input": []}, 400, "input"),
    ({"model": "tiny-bert", "input": "x", "encoding_format": "int8"}, 400, "encoding_format"),
    ({"model": "tiny-bert", "input": "x", "dimensions": 3}, 400, "dimensions"),
])
def test_bad_embedding_requests_get_openai_errors(embed_server, body, status, fragment):
    r = requests.post(embed_server.url + "/v1/embeddings", json=body, timeout=60)
    assert r.status_code == status and fragment in json.dumps(r.json()["error"])


def test_a_server_without_embedding_model_says_how_to_add_one(server):
    r = requests.post(server.url + "/v1/embeddings", json={"model": "x", "input": "y"},
                      timeout=30)
    assert r.status_code == 404 and "--embedding-model" in r.json()["error"]["message"]


def test_minilm_over_http_equals_parrot_embed(run_dir, capsys, monkeypatch):
    folder = minilm_dir()
    live = serve(run_dir, max_batch=2, max_queue=4, api_key=None, embedding_model=str(folder))
    try:
        texts = ["A cat sits on the mat.", "Café déjà vu — naïve résumé", "北京欢迎你"]
        result = openai_client(live).embeddings.create(model=folder.name, input=texts)
        got = np.array([d.embedding for d in result.data], dtype=np.float32)
    finally:
        live.stop()
    np.testing.assert_allclose(got, cli_embed(capsys, monkeypatch, folder, texts), atol=1e-6)
