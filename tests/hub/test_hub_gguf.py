"""GGUF files → parrot models: name maps, RoPE row order, and clear errors on bad files."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("gguf")

from gguf_helpers import TINY_LLAMA, tiny_llama, write_llama_gguf  # noqa: E402

from parrot.errors import ParrotError  # noqa: E402
from parrot.hub.gguf import read_gguf  # noqa: E402
from parrot.hub.gguf_model import load_gguf  # noqa: E402
from parrot.hub.naming import (  # noqa: E402
    GGUF_LLAMA,
    HF_GPT2,
    HF_LLAMA,
    invert,
    permute_rope,
    rename,
    unpermute_rope,
)


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    model = tiny_llama(seed=3)
    return model, write_llama_gguf(model, tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.mark.parametrize("table", [GGUF_LLAMA, HF_LLAMA, HF_GPT2], ids=["gguf", "llama", "gpt2"])
def test_name_tables_round_trip(table):
    back = invert(table)
    for foreign, canonical in table.items():
        for layer in ("0", "17"):
            name = foreign.replace("{i}", layer)
            mapped = rename(name, table)
            assert mapped == canonical.replace("{i}", layer)
            assert rename(mapped, back) == name


def test_unpermute_inverts_permute_and_pairs_rows_half_split():
    w = torch.arange(2 * 8 * 3, dtype=torch.float32).reshape(16, 3)  # 2 heads of size 8
    assert torch.equal(unpermute_rope(permute_rope(w, 2), 2), w)
    # llama.cpp's head 0 rows [r0 r4 r1 r5 r2 r6 r3 r7]: adjacent pairs are HF's (j, j + 4).
    assert permute_rope(w, 2)[:8, 0].tolist() == [0, 12, 3, 15, 6, 18, 9, 21]


def test_loaded_gguf_model_reproduces_the_source_logits(tiny_file):
    source, path = tiny_file
    model, tokenizer, info = load_gguf(path)
    assert model.config == TINY_LLAMA
    tokens = torch.randint(0, TINY_LLAMA.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), source(tokens), rtol=0, atol=1e-5)
    assert model.lm_head.weight is model.tok_emb.weight  # tied: no output.weight stored
    assert (info.architecture, info.bos_id, info.eos_ids[0]) == ("llama", 1, 2)
    assert tokenizer.encode("the 12") == [259, 104, 35, 52, 53]  # "th" "e" " " "1" "2"


def test_quantized_gguf_loads_close_to_the_source(tmp_path):
    source = tiny_llama(seed=4)
    model, _, info = load_gguf(write_llama_gguf(source, tmp_path / "q8.gguf", qtype="Q8_0"))
    assert info.quantization == "Q8_0"
    tokens = torch.arange(10)[None]
    with torch.no_grad():
        diff = (model(tokens) - source(tokens)).abs().max()
    assert 0 < diff < 0.05  # 8-bit rounding, not a layout error


def test_truncated_file_is_a_clear_error(tiny_file, tmp_path):
    data = tiny_file[1].read_bytes()
    for cut in (len(data) - 100, 60, 10):
        bad = tmp_path / f"cut{cut}.gguf"
        bad.write_bytes(data[:cut])
        with pytest.raises(ParrotError, match="truncated|corrupt"):
            read_gguf(bad)


def test_not_a_gguf_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"PK\x03\x04 not a model, just some zip-looking bytes")
    with pytest.raises(ParrotError, match="not a GGUF file"):
        read_gguf(bad)
    with pytest.raises(ParrotError, match="No GGUF file"):
        read_gguf(tmp_path / "missing.gguf")


def test_unsupported_architecture_is_a_clear_error(tiny_file, tmp_path):
    data = tiny_file[1].read_bytes().replace(b"llama", b"xlama")
    bad = tmp_path / "x.gguf"
    bad.write_bytes(data)
    with pytest.raises(ParrotError, match="'xlama' model"):
        load_gguf(bad)


def test_unsupported_tensor_type_is_a_clear_error(tmp_path):
    pytest.importorskip("gguf")
    source = tiny_llama(seed=5)
    path = write_llama_gguf(source, tmp_path / "mxfp4.gguf", qtype="MXFP4")
    with pytest.raises(ParrotError, match="MXFP4, which parrot cannot read"):
        load_gguf(path)


def assert_same_as_gguf_reader(path):
    """Our parser and the `gguf` package's reader agree on metadata and every tensor."""
    import gguf
    import numpy as np

    ours = read_gguf(path)
    reader = gguf.GGUFReader(path, "r")
    for name, field in reader.fields.items():
        if not name.startswith("GGUF."):
            assert ours.metadata[name] == field.contents(), name
    assert [t.name for t in reader.tensors] == list(ours.tensors)
    for t in reader.tensors:
        mine = ours.tensors[t.name]
        assert mine.qtype == t.tensor_type.name
        assert mine.shape == tuple(reversed(t.shape.tolist()))
        assert np.array_equal(np.asarray(mine.raw).reshape(-1), np.asarray(t.data).view(np.uint8).reshape(-1))


def test_parser_agrees_with_gguf_reader_on_a_written_file(tiny_file):
    assert_same_as_gguf_reader(tiny_file[1])


@pytest.mark.slow
def test_parser_agrees_with_gguf_reader_on_smollm2(smollm2_path):
    assert_same_as_gguf_reader(smollm2_path)
