"""Documents: the files a store indexes, read into text with one reader per kind.

    paths (files and folders) → sorted files → (kind, text) → chunking

Kinds: plain text, Markdown, reStructuredText, HTML (visible text only, scripts and styles
dropped), Python source, PDF (through `pypdf`, pages joined by blank lines) and JSONL (one
record per line, its text field). Markdown, reST and Python are indexed as written: their
markup is text a reader recognises, and keeping it makes character offsets point into the
file itself. A file that is binary, undecodable or broken is skipped with one warning naming
it; the run goes on.
"""

from __future__ import annotations

import hashlib
import html.parser
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from parrot.errors import ParrotError

KINDS = {
    ".txt": "text", ".text": "text", "": "text", ".log": "text",
    ".md": "markdown", ".markdown": "markdown",
    ".rst": "rst",
    ".html": "html", ".htm": "html",
    ".py": "python",
    ".pdf": "pdf",
    ".jsonl": "jsonl",
}
_SKIP_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", "node_modules", ".venv", "venv"})


@dataclass(frozen=True)
class Document:
    """One readable file: its absolute path, kind, the hash of its bytes, and its text."""

    path: str
    kind: str
    digest: str
    text: str


def kind_of(path: Path) -> str | None:
    """The reader for a file name (by suffix), None for a kind parrot does not read."""
    return KINDS.get(path.suffix.lower())


def list_files(paths: Sequence[str | Path]) -> list[Path]:
    """Every file under `paths` whose kind parrot reads, absolute, sorted, each once.
    Hidden files and version-control / cache folders are left out."""
    found: set[Path] = set()
    for given in paths:
        path = Path(given).expanduser()
        if not path.exists():
            raise ParrotError(f"{given} does not exist; give files or folders to index.")
        if path.is_file():
            found.add(path.resolve())
            continue
        for child in path.rglob("*"):
            rel = child.relative_to(path).parts
            if any(p.startswith(".") or p in _SKIP_DIRS for p in rel):
                continue
            if child.is_file() and kind_of(child) is not None:
                found.add(child.resolve())
    return sorted(found)


def file_digest(data: bytes) -> str:
    """sha256 of a file's bytes: the key that tells an unchanged file from a changed one."""
    return hashlib.sha256(data).hexdigest()


def read_document(path: Path, data: bytes, text_field: str = "text") -> str:
    """The text of one file's bytes; ValueError when it is binary or cannot be read."""
    kind = kind_of(path) or "text"
    if kind == "pdf":
        return _pdf_text(data)
    if b"\x00" in data[:8192]:
        raise ValueError("binary content (NUL bytes)")
    text = data.decode("utf-8")  # UnicodeDecodeError is a ValueError
    if kind == "html":
        return html_text(text)
    if kind == "jsonl":
        return jsonl_text(text, text_field)
    return text


def read_documents(files: Sequence[Path], warn: Callable[[str], None],
                   text_field: str = "text") -> Iterator[tuple[Path, bytes, str | None]]:
    """(path, bytes, text) per file; text None (and one warning) for an unreadable one."""
    for path in files:
        try:
            data = path.read_bytes()
            text = read_document(path, data, text_field)
        except (OSError, ValueError) as err:
            warn(f"skipped {path}: {err}")
            yield path, b"", None
            continue
        yield path, data, text


class _TextOnly(html.parser.HTMLParser):
    """Collects the visible text of an HTML page; block elements end a paragraph."""

    BLOCKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6",
                        "pre", "section", "article", "table", "ul", "ol", "blockquote"})
    HIDDEN = frozenset({"script", "style", "head", "template", "noscript"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in self.HIDDEN:
            self.hidden += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def html_text(source: str) -> str:
    """The visible text of an HTML page, paragraphs separated by blank lines."""
    parser = _TextOnly()
    parser.feed(source)
    parser.close()
    paragraphs = ("".join(parser.parts)).split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip())


def jsonl_text(source: str, field: str) -> str:
    """The `field` of every JSONL record, one paragraph each; ValueError when none has it."""
    texts = []
    for line in source.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)  # JSONDecodeError is a ValueError
        except RecursionError:  # found by fuzzing: a line nested thousands deep
            raise ValueError("a record is nested too deeply to read") from None
        if isinstance(record, dict) and isinstance(record.get(field), str):
            texts.append(record[field])
    if not texts:
        raise ValueError(f"no record has a {field!r} text field")
    return "\n\n".join(texts)


def _pdf_text(data: bytes) -> str:
    import io

    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
    # PyPdfError covers LimitReachedError (a self-referencing object, found by fuzzing)
    except (PyPdfError, KeyError, TypeError, AttributeError, RecursionError) as err:
        raise ValueError(f"unreadable PDF ({err})") from err
    return "\n\n".join(p.strip() for p in pages if p.strip())
