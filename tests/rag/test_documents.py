"""Readers per document kind; unreadable files skipped with one warning each."""

import json

import pytest
from rag_helpers import make_pdf

from parrot.errors import ParrotError
from parrot.rag.documents import html_text, list_files, read_document, read_documents


def test_plain_markdown_rst_and_python_are_read_as_written(tmp_path):
    files = {"a.txt": "plain words", "b.md": "# Title\n\nSome *markdown*.",
             "c.rst": "Title\n=====\n\nSome ``rst``.", "d.py": 'def f():\n    """Doc."""\n'}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        assert read_document(tmp_path / name, text.encode()) == text


def test_html_keeps_visible_text_only():
    page = ("<html><head><title>T</title><style>p {color: red}</style></head><body>"
            "<h1>Logs</h1><p>Rotate the&nbsp;logs <b>daily</b>.</p><script>alert(1)</script>"
            "<ul><li>one</li><li>two</li></ul></body></html>")
    assert html_text(page) == "Logs\n\nRotate the logs daily.\n\none\n\ntwo"


def test_pdf_text_comes_through_pypdf(tmp_path):
    data = make_pdf(["Rotate the logs every night.", "Keep seven days."])
    assert read_document(tmp_path / "x.pdf", data) == "Rotate the logs every night.\nKeep seven days."


def test_jsonl_reads_the_text_field_of_each_record(tmp_path):
    lines = [{"text": "first record"}, {"other": 1}, {"text": "second record"}]
    data = "\n".join(json.dumps(r) for r in lines).encode()
    assert read_document(tmp_path / "x.jsonl", data) == "first record\n\nsecond record"
    assert read_document(tmp_path / "x.jsonl", data.replace(b'"text"', b'"body"'),
                         text_field="body") == "first record\n\nsecond record"


def test_binary_undecodable_and_broken_files_are_skipped_with_a_warning_each(tmp_path):
    (tmp_path / "good.txt").write_text("fine")
    (tmp_path / "nul.txt").write_bytes(b"abc\x00\x01\x02")
    (tmp_path / "latin.md").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    (tmp_path / "bad.jsonl").write_text("{not json")
    warnings = []
    out = list(read_documents(list_files([tmp_path]), warnings.append))
    texts = {p.name: t for p, _, t in out}
    assert texts == {"bad.jsonl": None, "broken.pdf": None, "good.txt": "fine",
                     "latin.md": None, "nul.txt": None}
    assert len(warnings) == 4 and all(w.startswith("skipped ") for w in warnings)
    for name in ("nul.txt", "latin.md", "broken.pdf", "bad.jsonl"):
        assert sum(name in w for w in warnings) == 1


def test_listing_is_sorted_absolute_and_skips_hidden_and_unknown_kinds(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".git").mkdir()
    for name in ("sub/b.md", "a.txt", ".git/c.txt", ".hidden.txt", "img.png", "README"):
        (tmp_path / name).write_text("x")
    assert [p.relative_to(tmp_path).as_posix() for p in list_files([tmp_path])] == [
        "README", "a.txt", "sub/b.md"]
    assert list_files([tmp_path / "img.png"]) == [(tmp_path / "img.png").resolve()]


def test_a_missing_path_is_a_parrot_error(tmp_path):
    with pytest.raises(ParrotError, match="does not exist"):
        list_files([tmp_path / "nope"])
