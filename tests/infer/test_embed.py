"""Sentence embeddings and fill-mask: MiniLM against sentence-transformers, the CLI."""

import io
import json

import pytest
import torch
from encoder_helpers import minilm_dir, varied_sentences

from parrot.cli import main
from parrot.errors import ParrotError
from parrot.infer.embed import embed_texts
from parrot.infer.fill_mask import fill_mask
from parrot.model import ModelConfig, Transformer
from parrot.tokenizer import WordPieceTokenizer
from parrot.tokenizer.wordpiece import WordPieceParts

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "dog", "sat", "on", "."]


@pytest.fixture(scope="module")
def tiny_bert():
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=len(VOCAB), context_length=16, d_model=16, n_layers=1,
                      n_heads=2, norm_placement="post", causal=False, type_vocab_size=2,
                      embed_norm=True, head_transform=True)
    specials = {s: i for i, s in enumerate(VOCAB[:5])}
    return Transformer(cfg).eval(), WordPieceTokenizer(WordPieceParts(VOCAB, specials))


def test_fill_mask_ranks_the_softmax_at_the_mask(tiny_bert):
    model, tok = tiny_bert
    [row] = fill_mask(model, tok, "the [MASK] sat .", top_k=3)
    logits = model(torch.tensor([[2, 5, 4, 8, 10, 3]]))[0, 2]
    probs, ids = torch.softmax(logits, -1).topk(3)
    assert [c.token_id for c in row] == ids.tolist()
    torch.testing.assert_close(torch.tensor([c.probability for c in row]), probs)
    assert row[0].sequence == f"the {VOCAB[row[0].token_id]} sat."


def test_fill_mask_without_a_mask_is_a_parrot_error(tiny_bert):
    with pytest.raises(ParrotError, match=r"has no \[MASK\]"):
        fill_mask(*tiny_bert, "the cat sat")


def test_embeddings_do_not_depend_on_batching(tiny_bert):
    model, tok = tiny_bert
    texts = ["the cat", "the dog sat on the cat .", "cat", "on the dog"]
    one = embed_texts(model, tok, texts, batch_size=1)
    many = embed_texts(model, tok, texts, batch_size=8)
    torch.testing.assert_close(one, many, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(one.norm(dim=-1), torch.ones(4))


# --- MiniLM (pulled once; skipped without network) --------------------------------------
@pytest.fixture(scope="module")
def minilm():
    from parrot.hub.resolve import resolve_model

    torch.set_num_threads(2)
    return resolve_model(minilm_dir())


def check_against_sentence_transformers(minilm, texts):
    st = pytest.importorskip("sentence_transformers")
    model, tok, info = minilm
    reference = st.SentenceTransformer(str(minilm_dir()), device="cpu")
    expected = torch.from_numpy(reference.encode(texts, batch_size=32))
    ours = embed_texts(model, tok, texts, max_length=info.extra["max_seq_length"])
    cosine = torch.nn.functional.cosine_similarity(ours, expected, dim=-1)
    assert float(cosine.min()) >= 0.9999, (float(cosine.min()), texts[int(cosine.argmin())])
    return tok


def test_minilm_matches_sentence_transformers_on_hard_cases(minilm):
    # The fixed hard cases (accents, CJK, emoji, ...) plus one text past 256 pieces.
    texts = varied_sentences(200)[:24] + [" ".join(["parrot"] * 300)]
    check_against_sentence_transformers(minilm, texts)


@pytest.mark.slow
def test_minilm_matches_sentence_transformers_on_200_sentences(minilm):
    texts = varied_sentences(200)
    tok = check_against_sentence_transformers(minilm, texts)
    assert max(len(tok.encode(t)) for t in texts) > 256  # truncation was exercised


def run_cli(capsys, monkeypatch, *argv):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_embed_cli_json_equals_the_python_api(minilm, capsys, monkeypatch):
    model, tok, info = minilm
    texts = ["A cat sits on the mat.", "Stock markets fell."]
    code, out, err = run_cli(capsys, monkeypatch, "embed", minilm_dir(), *texts, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["dimensions"] == 384
    expected = embed_texts(model, tok, texts, max_length=256)
    torch.testing.assert_close(torch.tensor(result["embeddings"]), expected)


def test_fill_mask_on_an_encoder_without_mlm_head_is_one_sentence(minilm, capsys,
                                                                  monkeypatch):
    code, _, err = run_cli(capsys, monkeypatch, "fill-mask", minilm_dir(), "The [MASK] is blue.")
    assert code == 2 and "no masked-LM head" in err and "Traceback" not in err


def test_generate_with_minilm_is_one_sentence(minilm, capsys, monkeypatch):
    code, _, err = run_cli(capsys, monkeypatch, "generate", minilm_dir(), "--prompt", "hi")
    assert code == 2 and "encoder-only" in err and "Traceback" not in err
