"""The embedded default corpus and reading training text from files, folders and JSONL."""

import ast
import hashlib
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from parrot.data.corpus import EMBEDDED_CORPUS_NAME, _module_docstrings, embedded_corpus, load_texts
from parrot.errors import ParrotError


def test_embedded_corpus_is_large_and_holds_the_language_reference():
    docs = embedded_corpus()
    size = sum(len(d.encode("utf-8")) for d in docs)
    assert EMBEDDED_CORPUS_NAME == "pystdlib-docs"
    assert len(docs) > 400 and size > 1_000_000
    joined = "\n".join(docs[:150])
    assert "The “for” statement" in joined or "for_stmt" in joined  # pydoc_data topics
    assert any("Return the number of items" in d or "Return a new" in d for d in docs)


def test_embedded_corpus_is_identical_across_processes():
    code = (
        "import hashlib; from parrot.data.corpus import embedded_corpus; "
        "print(hashlib.sha256('\\x00'.join(embedded_corpus()).encode()).hexdigest())"
    )
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout for _ in range(2)]
    here = hashlib.sha256("\x00".join(embedded_corpus()).encode()).hexdigest()
    assert runs[0].strip() == runs[1].strip() == here


def test_embedded_corpus_does_not_import_the_modules_it_reads():
    code = ("import sys; from parrot.data.corpus import embedded_corpus; embedded_corpus(); "
            "print('tkinter' in sys.modules, 'turtle' in sys.modules, 'antigravity' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]


def test_docstring_scan_matches_ast_on_stdlib_modules():
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in ["textwrap.py", "heapq.py", "fractions.py", "json/decoder.py"]:
        source = (stdlib / name).read_text(encoding="utf-8")
        tree = ast.parse(source)
        nodes = [n for n in ast.walk(tree)
                 if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
        expected = {ast.get_docstring(n) for n in nodes} - {None, ""}
        scanned = _module_docstrings(source)
        assert expected and all(doc in scanned for doc in expected), name


def test_docstring_scan_handles_quotes_prefixes_and_comments():
    source = (
        '#!/usr/bin/env python\n# comment\n\nr"""Module \\d doc."""\n\n'
        "class A:  # note\n    '''Class doc with \"quotes\".'''\n\n"
        "    def f(self,\n          x):\n        \"One-liner.\"\n        return '''not a doc'''\n"
    )
    assert _module_docstrings(source) == 'Module \\d doc.\n\nClass doc with "quotes".\n\nOne-liner.'


def test_load_texts_none_gives_the_embedded_corpus():
    assert load_texts(None) == embedded_corpus()


def test_load_texts_reads_files_folders_sorted_and_jsonl(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "2.txt").write_text("second")
    (tmp_path / "a.txt").write_text("first")
    (tmp_path / ".hidden").write_text("skipped")
    jsonl = tmp_path / "more.jsonl"
    jsonl.write_text(json.dumps({"body": "x"}) + "\n\n" + json.dumps({"body": "y"}) + "\n")
    assert load_texts([tmp_path / "a.txt"]) == ["first"]
    assert load_texts([tmp_path], text_field="body") == ["first", "second", "x", "y"]


@pytest.mark.parametrize("setup, message", [
    (lambda p: p / "missing.txt", "does not exist"),
    (lambda p: (p / "bad.txt").write_bytes(b"ok so far \xff\xfe") and p / "bad.txt",
     r"bad.txt is not UTF-8 text \(invalid byte at offset 10\)"),
    (lambda p: (p / "empty.txt").write_text("  \n") and p / "empty.txt", "contains no text"),
    (lambda p: (p / "d").mkdir() or p / "d", "contains no text"),
    (lambda p: (p / "x.jsonl").write_text('{"text": 1}\n') and p / "x.jsonl",
     "line 1 has no string field 'text'"),
    (lambda p: (p / "y.jsonl").write_text('{"text": "a"}\n{oops\n') and p / "y.jsonl",
     "line 2 is not valid JSON"),
])
def test_bad_inputs_raise_one_clear_sentence(tmp_path, setup, message):
    with pytest.raises(ParrotError, match=message):
        load_texts([setup(tmp_path)])


def test_unreadable_file_is_reported(tmp_path):
    path = tmp_path / "secret.txt"
    path.write_text("x")
    path.chmod(0)
    if os.access(path, os.R_OK):
        pytest.skip("running as root: every file is readable")
    with pytest.raises(ParrotError, match="Cannot read"):
        load_texts([path])


def test_docstring_examples_hold():
    import doctest

    from parrot.data import corpus

    assert doctest.testmod(corpus).failed == 0
