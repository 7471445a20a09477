"""The project's QA set, generated deterministically from Python's own reference docs.

Source: `pydoc_data.topics` (the language reference shipped inside the standard library; no
one here wrote it). `write_corpus` stores each topic as `TOPIC.txt`; `build_qa` reads the
same texts and makes one question per documented API entry:

    a signature line at some indent, e.g.     str.center(width[, fillchar])
    a blank line, then an indented paragraph      Return centered in a string of length ...

A group of signatures sharing one description (object.__add__, __sub__, ...) yields one
question, for its first signature. Code examples (a lower-case first word) are skipped.
Each topic also yields one question about its title, answered by its first prose paragraph:

    str.X              "What does the string method X() do?"
    object.__X__       "What is the special method __X__() for?"
    other.X            "What does other.X() do?"
    The "X" statement  "What does the X statement do?"
    any other title    "What does the Python reference say about TITLE?"

The gold passage is the description's (or the topic's) first paragraph: its document and
character span.
The answer key is the rarest word of that paragraph's first sentence (fewest topics holding
it; ties: longer, then alphabetical) that is at least 4 letters, not a stop word and not in
the question. An answer "contains" the key when the key appears in it, case ignored. On
Python 3.11.7 this gives 172 questions.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from parrot.utils.atomic import atomic_write_text

_SIGNATURE = re.compile(r"^(?P<indent> *)(?P<owner>[A-Za-z_]\w*)\.(?P<name>[A-Za-z_]\w*)"
                        r"\((?P<args>.*)\)[ \t]*$", re.M)
_STOP = frozenset("""also aren cannot could does doesn each from have into itself more most
must only other same should such than that their them then there these they this those
through used uses using very were what when where which while will with would your return
returns value values object objects method methods argument arguments called""".split())


@dataclass(frozen=True)
class QAItem:
    """A question, its answer key, and the gold passage: `doc` (a file name in the corpus
    folder) and the character span of the passage in it."""

    id: str
    question: str
    answer: str
    doc: str
    start: int
    end: int

    def to_dict(self) -> dict:
        return asdict(self)


def topics() -> dict[str, str]:
    """Python's reference topics (name → text) of the running Python."""
    from pydoc_data.topics import topics as table

    return dict(table)


def write_corpus(folder: str | Path) -> list[Path]:
    """Each topic as folder/TOPIC.txt (written atomically); the paths, sorted."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, text in sorted(topics().items()):
        path = folder / f"{name}.txt"
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            atomic_write_text(path, text)
        out.append(path)
    return out


def _question(owner: str, name: str) -> str:
    if owner == "str":
        return f"What does the string method {name}() do?"
    if owner == "object" and name.startswith("__"):
        return f"What is the special method {name}() for?"
    return f"What does {owner}.{name}() do?"


def _description(text: str, end: int, indent: int) -> tuple[int, int] | None:
    """The span of the paragraph after a signature ending at `end`, when it is indented
    deeper than the signature and reads as prose (None for another signature or code)."""
    match = re.compile(r"\n[ \t]*\n( +)(\S[^\n]*(?:\n\1\S[^\n]*)*)").match(text, end)
    if match is None or len(match.group(1)) <= indent:
        return None
    if _SIGNATURE.match(match.group(2)) or not match.group(2)[0].isupper():
        return None
    return match.start(2), match.end(2)


def _words(text: str) -> list[str]:
    return [w.lower() for w in re.findall(r"[A-Za-z]{4,}", text)]


def _answer_key(passage: str, question: str, frequency: Counter) -> str | None:
    first = re.split(r"(?<=\.)\s", " ".join(passage.split()), maxsplit=1)[0]
    asked = set(_words(question))
    words = sorted({w for w in _words(first) if w not in _STOP and w not in asked},
                   key=lambda w: (frequency[w], -len(w), w))
    return words[0] if words else None


def _api_entries(text: str) -> list[tuple[str, str, tuple[int, int]]]:
    """(key, question, description span) per documented signature group, in order."""
    out, leader, last_end = [], None, -1
    for match in _SIGNATURE.finditer(text):
        if leader is None or text[last_end:match.start()].strip():
            leader = match  # a new group: not directly below the previous signature
        last_end = match.end()
        span = _description(text, match.end(), len(match.group("indent")))
        if span is not None and len(text[span[0]:span[1]].split()) >= 5:
            owner, name = leader.group("owner"), leader.group("name")
            out.append((f"{owner}.{name}", _question(owner, name), span))
            leader = None
    return out


def _topic_entry(doc: str, text: str) -> tuple[str, str, tuple[int, int]] | None:
    """(key, question, span of the first prose paragraph) for a topic's title."""
    title = text.split("\n", 1)[0].strip()
    statement = re.fullmatch(r'The "(\w+)" statement', title)
    question = (f"What does the {statement.group(1)} statement do?" if statement
                else f"What does the Python reference say about {title.lower()}?")
    for match in re.finditer(r"(?:\A|\n\n)([A-Z][^\n]*(?:\n[^\s][^\n]*)*)", text):
        if match.start(1) > len(title) and len(match.group(1).split()) >= 5:
            return f"topic:{title}", question, (match.start(1), match.end(1))
    return None


def build_qa() -> list[QAItem]:
    """The QA items, in topic order then document order (see the module docstring)."""
    table = topics()
    frequency = Counter(w for text in table.values() for w in set(_words(text)))
    items, asked = [], set()
    for doc in sorted(table):
        text = table[doc]
        entries = [_topic_entry(doc, text), *_api_entries(text)]
        for key, question, span in (e for e in entries if e is not None):
            answer = _answer_key(text[span[0]:span[1]], question, frequency)
            if key in asked or answer is None:
                continue
            asked.add(key)
            items.append(QAItem(f"{doc}:{key}", question, answer, f"{doc}.txt", *span))
    return items


def write_qa(path: str | Path, items: list[QAItem]) -> None:
    atomic_write_text(path, "".join(json.dumps(i.to_dict()) + "\n" for i in items))


def read_qa(path: str | Path) -> list[QAItem]:
    """QA items from JSONL (fields of QAItem; `id` optional)."""
    from parrot.errors import ParrotError

    items = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise ParrotError(f"Cannot read the QA file {path} ({err.strerror}).") from err
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            items.append(QAItem(str(record.get("id", n)), record["question"], record["answer"],
                                record["doc"], int(record["start"]), int(record["end"])))
        except (ValueError, KeyError, TypeError) as err:
            raise ParrotError(f"Line {n} of {path} is not a QA record with question, answer, "
                              f"doc, start and end ({err}).") from err
    if not items:
        raise ParrotError(f"{path} holds no QA records; build one with `parrot rag qa`.")
    return items
