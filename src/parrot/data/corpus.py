"""Text for training: the embedded default corpus, plain files, folders and JSONL.

The embedded corpus ("pystdlib-docs") needs no download: it is the Python language
reference that ships inside the standard library (`pydoc_data/topics.py`) plus the
docstrings of the standard library's own modules. Both are read by parsing the `.py`
sources with `ast`, never by importing them (importing runs code and differs by platform),
over sorted paths, so the same Python version yields the same documents everywhere.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import sysconfig
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from parrot.errors import ParrotError

EMBEDDED_CORPUS_NAME = "pystdlib-docs"

# Folders of the standard library that hold tests, tools or third-party code, not docs.
_SKIP_DIRS = frozenset(
    {"test", "tests", "idlelib", "site-packages", "dist-packages", "lib2to3", "turtledemo",
     "__pycache__", "_bundled", "ensurepip", "pydoc_data"}
)
_SKIP_PREFIXES = ("config-",)
_LINE_END = r"[ \t]*(?:\#[^\n]*)?\n"  # spaces, an optional comment, a newline
_STRING = (
    r'[rRuU]?(?:"""(?:[^"\\]|\\.|"(?!""))*"""'
    r"|'''(?:[^'\\]|\\.|'(?!''))*'''"
    r'|"(?:[^"\\\n]|\\.)*"'
    r"|'(?:[^'\\\n]|\\.)*')"
)
_DOCSTRING = re.compile(rf"(?:\A|:{_LINE_END})(?:{_LINE_END})*[ \t]*({_STRING}){_LINE_END}", re.S)


def _pydoc_topics(stdlib: Path) -> list[str]:
    """The language-reference topics, one document each, in sorted topic order."""
    path = stdlib / "pydoc_data" / "topics.py"
    if not path.is_file():
        return []
    tree = ast.parse(path.read_bytes())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "topics":
            topics = ast.literal_eval(node.value)
            return [topics[key] for key in sorted(topics)]
    return []


def _wanted(path: Path, stdlib: Path) -> bool:
    parts = path.relative_to(stdlib).parts[:-1]
    return not any(p in _SKIP_DIRS or p.startswith(_SKIP_PREFIXES) for p in parts)


def _module_docstrings(source: str) -> str:
    """The docstrings of one module (module, classes, functions) in source order.

    Parsing the ~10 MB standard library with `ast` takes ~10 s here; this scan takes
    ~0.7 s. It keeps a string literal that stands alone as the first statement of the
    file or right after a line ending in ":" (a `def`/`class` header), which is where
    Python takes docstrings from; `ast.literal_eval` turns each literal into its value.
    """
    docs = []
    for match in _DOCSTRING.finditer(source):
        try:
            value = ast.literal_eval(match.group(1).strip())
        except (SyntaxError, ValueError):
            continue
        if isinstance(value, str) and value.strip():
            docs.append(inspect.cleandoc(value))
    return "\n\n".join(docs)


@lru_cache(maxsize=1)
def _embedded() -> tuple[str, ...]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    documents = _pydoc_topics(stdlib)
    for path in sorted(stdlib.rglob("*.py")):
        if _wanted(path, stdlib):
            text = _module_docstrings(path.read_bytes().decode("utf-8", "replace"))
            if text.strip():
                documents.append(text)
    return tuple(documents)


def embedded_corpus() -> list[str]:
    """The embedded default corpus: a deterministic list of documents (built once per process).

    >>> docs = embedded_corpus(); len(docs) > 500 and "for" in docs[0]
    True
    """
    return list(_embedded())


def load_texts(paths: Sequence[str | Path] | None, text_field: str = "text") -> list[str]:
    """Read training documents: None → the embedded corpus; else files, folders, `.jsonl`.

    A folder is read recursively in sorted order; a `.jsonl` file gives one document per
    line from the field `text_field`. Raises ParrotError on a missing or unreadable path,
    a file that is not UTF-8 (naming the byte offset), or when nothing but empty text is found.
    """
    if paths is None:
        return embedded_corpus()
    texts = [text for path in paths for text in _read_path(Path(path), text_field)]
    if not any(t.strip() for t in texts):
        shown = ", ".join(str(p) for p in paths)
        raise ParrotError(f"The corpus at {shown} contains no text; give files with some text.")
    return texts


def _read_path(path: Path, text_field: str) -> Iterator[str]:
    if not path.exists():
        raise ParrotError(f"The data path {path} does not exist; check the spelling.")
    files = [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    for file in files:
        yield from _read_file(file, text_field)


def read_utf8(path: Path) -> str:
    """The text of the file `path`; ParrotError when it cannot be read or is not UTF-8."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ParrotError(f"Cannot read {path} ({err.strerror}); check its permissions.") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ParrotError(
            f"{path} is not UTF-8 text (invalid byte at offset {err.start}); "
            "convert it to UTF-8 or leave it out."
        ) from None


def _read_file(path: Path, text_field: str) -> Iterator[str]:
    if path.suffix != ".jsonl":
        yield read_utf8(path)
        return
    for where, record in jsonl_records(path):
        value = record.get(text_field) if isinstance(record, dict) else None
        if not isinstance(value, str):
            raise ParrotError(f"{where} has no string field {text_field!r}; "
                              "pass the right name with --text-field.")
        yield value


def jsonl_records(path: Path) -> Iterator[tuple[str, Any]]:
    """("PATH line N", the parsed JSON) for each non-blank line of the JSONL file `path`."""
    for number, line in enumerate(read_utf8(path).splitlines(), start=1):
        if line.strip():
            where = f"{path} line {number}"
            try:
                record = json.loads(line)
            except ValueError:
                raise ParrotError(f"{where} is not valid JSON; fix or remove it.") from None
            yield where, record
