"""`parrot tokenizer train` and `parrot tokenize`: happy paths and one-sentence errors."""

import json
import subprocess
import sys

import pytest

from parrot.cli import main
from parrot.tokenizer import Tokenizer


@pytest.fixture
def text_dir(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "a.txt").write_text("the frogs and the mice fought the battle of the frogs\n" * 20)
    (folder / "b.txt").write_text("batrachomachia: the battle of frogs and mice\n" * 5)
    return folder


def test_train_then_tokenize_shows_pieces_ids_and_bytes(text_dir, tmp_path, capsys):
    out = tmp_path / "tok"
    code = main(["tokenizer", "train", "--data", str(text_dir), "--vocab-size", "290",
                 "--out", str(out), "--special", "<|endoftext|>", "[PAD]"])
    assert code == 0
    tok = Tokenizer.load(out)
    assert tok.vocab_size == 290 and tok.special_tokens == {"<|endoftext|>": 288, "[PAD]": 289}
    capsys.readouterr()
    assert main(["tokenize", str(out / "tokenizer.json"), "the batrachomachia<|endoftext|>"]) == 0
    shown = capsys.readouterr().out
    ids = tok.encode("the batrachomachia<|endoftext|>", allowed_special="all")
    assert f"{len(ids)} tokens" in shown
    for i in ids:
        assert f" {i} " in shown
    assert "·batrach" in shown or "·b" in shown  # the leading space is made visible
    assert "<|endoftext|>" in shown and " 13 " in shown  # its byte count


def test_tokenize_ids_decodes_back(text_dir, tmp_path, capsys):
    out = tmp_path / "tok"
    main(["tokenizer", "train", "--data", str(text_dir), "--vocab-size", "280", "--out", str(out)])
    ids = Tokenizer.load(out).encode("the frogs")
    capsys.readouterr()
    assert main(["tokenize", str(out), "--ids", *map(str, ids)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "the frogs"


def test_train_reads_jsonl_text_field_and_cl100k_pattern(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps({"body": f"line {i} of text 12345"}) for i in range(50)))
    out = tmp_path / "tok"
    assert main(["tokenizer", "train", "--data", str(data), "--text-field", "body",
                 "--vocab-size", "270", "--pattern", "cl100k", "--out", str(out)]) == 0
    tok = Tokenizer.load(out)
    assert tok.encode(" 12345") == tok.encode(" ") + tok.encode("123") + tok.encode("45")


def test_train_defaults_to_the_embedded_corpus(tmp_path, capsys):
    assert main(["tokenizer", "train", "--vocab-size", "260", "--out", str(tmp_path)]) == 0
    assert "pystdlib-docs" in capsys.readouterr().out
    assert Tokenizer.load(tmp_path).vocab_size == 260


def _bad_inputs(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\u00e9".encode("latin-1"))
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text("{")
    wordpiece = tmp_path / "wp.json"
    wordpiece.write_text(json.dumps({"model": {"type": "WordPiece", "vocab": {}}}))
    train = ["tokenizer", "train", "--out", str(tmp_path / "o"), "--vocab-size"]
    return [
        (train + ["300", "--data", str(tmp_path / "nope")], "does not exist"),
        (train + ["300", "--data", str(bad)], "latin1.txt is not UTF-8 text (invalid byte at offset 3)"),
        (train + ["300", "--data", str(empty)], "contains no text"),
        (train + ["257", "--special", "<a>", "<b>", "--data", str(empty)], "too small"),
        (["tokenize", str(corrupt), "x"], "not a readable tokenizer.json"),
        (["tokenize", str(wordpiece), "x"], "WordPiece tokenizer model"),
        (["tokenize", str(tmp_path / "none"), "x"], "not a file, folder or pulled model name"),
    ]


def test_bad_inputs_exit_2_with_one_sentence(tmp_path, capsys):
    for argv, message in _bad_inputs(tmp_path):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1


def test_bad_input_in_a_real_process_prints_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "parrot", "tokenizer", "train", "--data", str(tmp_path / "nope"),
         "--vocab-size", "300", "--out", str(tmp_path / "o")],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
