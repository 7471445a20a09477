"""Gemma 3's SentencePiece-style tokenizer: parrot against `tokenizers`, same run.

The tokenizer comes from the pulled `gemma3-270m` GGUF (score rule, as llama.cpp runs it).
It is saved as tokenizer.json, which `tokenizers` loads (and parrot too: rank rule). Each
encodes standard-library sources, one document after another on one thread: `textwrap.py`
(the file in llama.cpp's reference) and a few larger modules. parrot memoizes stretches of
text between whole pieces, so it is timed cold (a fresh encoder per run) and warm (same
text again). All encoders must return identical ids. Medians of interleaved runs.
Writes benchmarks/results/gemma_tokenizer.json.

    .venv/bin/python benchmarks/bench_gemma_tokenizer.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sysconfig
import tempfile
import time
from pathlib import Path

import tokenizers
import torch

from parrot.hub.gguf import read_gguf
from parrot.hub.gguf_tokenizer import tokenizer_from_gguf
from parrot.hub.pull import pull
from parrot.tokenizer import Tokenizer
from parrot.tokenizer.spm import SentencePieceEncoder

RESULTS = Path(__file__).resolve().parent / "results" / "gemma_tokenizer.json"
FILES = ("textwrap.py", "argparse.py", "typing.py", "inspect.py")


def documents() -> dict[str, str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return {name: (stdlib / name).read_text(encoding="utf-8") for name in FILES}


def median_seconds(fn, repeats: int, before=None) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        if before is not None:
            before()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ours, _ = tokenizer_from_gguf(read_gguf(pull("gemma3-270m")).metadata, "gemma3-270m")
    folder = Path(tempfile.mkdtemp())
    start = time.perf_counter()
    ours.save(folder)
    save_s = time.perf_counter() - start
    theirs = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    reloaded = Tokenizer.load(folder)
    docs = documents()
    rows = {}
    for name, text in docs.items():
        rows[name] = bench_file(ours, reloaded, theirs, text, args.repeats)
    report = {"tokenizer": "gemma3-270m (GGUF, 262,144 pieces)", "threads": 1,
              "save_tokenizer_json_s": round(save_s, 2), "repeats": args.repeats,
              "mb_per_s": rows}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print_table(rows)


def bench_file(ours: Tokenizer, reloaded: Tokenizer, theirs: tokenizers.Tokenizer, text: str,
               repeats: int) -> dict[str, float]:
    """MB/s of each encoder on one document; asserts they all give the same ids."""
    megabytes = len(text.encode("utf-8")) / 1e6
    fresh = {"score": lambda: setattr(ours, "_fast", SentencePieceEncoder(ours.parts)),
             "rank": lambda: setattr(reloaded, "_fast", SentencePieceEncoder(reloaded.parts))}
    runs = {
        "parrot gguf (cold)": (lambda: ours.encode(text, disallowed_special=()), fresh["score"]),
        "parrot gguf (warm)": (lambda: ours.encode(text, disallowed_special=()), None),
        "parrot gguf, special check": (lambda: ours.encode(text), None),
        "parrot tokenizer.json (cold)": (lambda: reloaded.encode(text, disallowed_special=()),
                                         fresh["rank"]),
        "tokenizers": (lambda: theirs.encode(text, add_special_tokens=False).ids, None),
    }
    row, expected = {}, None
    for name, (fn, before) in runs.items():
        seconds, ids = median_seconds(fn, repeats, before)
        expected = expected or ids
        assert ids == expected, f"{name} gives other ids"
        row[name] = round(megabytes / seconds, 3)
    row["ratio parrot gguf (cold) / tokenizers"] = round(
        row["parrot gguf (cold)"] / row["tokenizers"], 3)
    return row


def print_table(rows: dict[str, dict[str, float]]) -> None:
    names = list(next(iter(rows.values())))
    print(f"{'MB/s (1 thread)':<40}" + "".join(f"{f:>14}" for f in rows))
    for name in names:
        print(f"{name:<40}" + "".join(f"{rows[f][name]:>14}" for f in rows))


if __name__ == "__main__":
    main()
