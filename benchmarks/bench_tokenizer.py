"""Tokenizer speed and compression: parrot against `tokenizers` and `tiktoken`, same run.

Training: vocab 8,192, GPT-2 split pattern, on the embedded corpus (pystdlib-docs), parrot's
`Tokenizer.train` vs `tokenizers`' BpeTrainer. Encoding: ~10 MB of held-out text (the
standard library's own Python source files), one thread (one long string) and batched
(one document per file), for parrot's fast path, parrot's cached pure-Python encoder,
parrot's reference encoder (on a slice, extrapolated), `tokenizers` and `tiktoken` built
from the very same ranks. All encoders must return identical ids. Runs are interleaved and
repeated; medians are reported. Writes benchmarks/results/tokenizer.json.

    .venv/bin/python benchmarks/bench_tokenizer.py [--repeats 3] [--mb 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sysconfig
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import tiktoken
import tokenizers
from tokenizers import Regex, decoders, models, pre_tokenizers, trainers

from parrot.data.corpus import EMBEDDED_CORPUS_NAME, embedded_corpus
from parrot.tokenizer import PATTERNS, Tokenizer
from parrot.tokenizer.fast import CachedEncoder

RESULTS = Path(__file__).resolve().parent / "results" / "tokenizer.json"
VOCAB = 8192


def hf_train(docs: list[str], vocab_size: int) -> tokenizers.Tokenizer:
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PATTERNS["gpt2"]), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(docs, trainer)
    return tok


def held_out_documents(megabytes: float) -> list[str]:
    """Python source files of the standard library (not their docstrings alone), sorted."""
    docs, size = [], 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        docs.append(text)
        size += len(text.encode("utf-8"))
        if size >= megabytes * 1e6:
            break
    return docs


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def bench_training(docs: list[str], repeats: int) -> tuple[dict, Tokenizer, tokenizers.Tokenizer]:
    times: dict[str, list[float]] = {"parrot": [], "tokenizers": []}
    for _ in range(repeats):  # interleaved
        seconds, ours = timed(lambda: Tokenizer.train(docs, VOCAB))
        times["parrot"].append(seconds)
        seconds, theirs = timed(lambda: hf_train(docs, VOCAB))
        times["tokenizers"].append(seconds)
    row = {name: round(statistics.median(v), 3) for name, v in times.items()}
    row["ratio_parrot_over_tokenizers"] = round(row["parrot"] / row["tokenizers"], 2)
    return row, ours, theirs


def encoders(ours: Tokenizer, theirs: tokenizers.Tokenizer, docs: list[str]) -> dict:
    """name → (one-thread fn, batched fn or None), each returning the ids of every document.

    "one thread" encodes the documents one after another; "batched" hands the whole list to
    the library's batch call (threads: tiktoken's pool, rayon in `tokenizers`)."""
    ranks = {ours.token_bytes(i): i for i in range(ours.vocab_size)}
    tk = tiktoken.Encoding("parrot-bench", pat_str=ours.pattern, mergeable_ranks=ranks,
                           special_tokens={})
    cached = CachedEncoder(ours._tables)
    ours.encode("warm-up: builds the fast encoder once, as any first call does")
    return {
        "parrot fast": (lambda: [ours.encode(d) for d in docs], lambda: ours.encode_batch(docs)),
        "parrot cached-python": (lambda: [cached.encode(d, frozenset()) for d in docs], None),
        "tokenizers": (lambda: [theirs.encode(d).ids for d in docs],
                       lambda: [e.ids for e in theirs.encode_batch(docs)]),
        "tiktoken": (lambda: [tk.encode_ordinary(d) for d in docs],
                     lambda: tk.encode_ordinary_batch(docs)),
    }


def bench_encoding(ours: Tokenizer, theirs_path: Path, docs: list[str], repeats: int) -> dict:
    theirs = tokenizers.Tokenizer.from_file(str(theirs_path))  # the same ranks as ours
    megabytes = sum(len(d.encode("utf-8")) for d in docs) / 1e6
    runs = encoders(ours, theirs, docs)
    times: dict[str, list[float]] = {}
    outputs: list[object] = []  # the ids every encoder, in every mode, must reproduce
    for _ in range(repeats):
        for name, (single, batched) in runs.items():
            for mode, fn in (("one thread", single), ("batched", batched)):
                if fn is None:
                    continue
                seconds, ids = timed(fn)
                outputs = outputs or [ids]
                assert outputs[0] == ids, f"{name} ({mode}) gives other ids"
                times.setdefault(f"{name}|{mode}", []).append(seconds)
    sample = "".join(docs)[:200_000]
    slice_s, reference = timed(lambda: ours.encode_reference(sample))
    assert reference == ours.encode(sample), "the reference encoder gives other ids"
    rows = {key: megabytes / statistics.median(v) for key, v in times.items()}
    rows["parrot reference|one thread"] = len(sample.encode("utf-8")) / 1e6 / slice_s
    return {"megabytes": round(megabytes, 2), "mb_per_s": {k: round(v, 2) for k, v in rows.items()}}


def compression(ours: Tokenizer, theirs: tokenizers.Tokenizer, docs: list[str]) -> dict:
    text = "".join(docs)
    size = len(text.encode("utf-8"))
    a, b = size / len(ours.encode(text)), size / len(theirs.encode(text).ids)
    return {"parrot_bytes_per_token": round(a, 4), "tokenizers_bytes_per_token": round(b, 4),
            "ratio": round(a / b, 4)}


def print_tables(result: dict) -> None:
    train = result["training"]
    print(f"\ntraining, vocab {VOCAB}, {result['corpus']}:")
    print(f"  parrot {train['parrot']:.2f} s   tokenizers {train['tokenizers']:.2f} s   "
          f"ratio {train['ratio_parrot_over_tokenizers']:.2f}x (target <= 3x)")
    comp = result["compression_8192"]
    print(f"compression on held-out source: parrot {comp['parrot_bytes_per_token']} bytes/token, "
          f"tokenizers {comp['tokenizers_bytes_per_token']} (ratio {comp['ratio']})")
    rates = result["encoding"]["mb_per_s"]
    print(f"\nencoding {result['encoding']['megabytes']} MB (MB/s; ratio = parrot-row / peer):")
    print(f"  {'encoder':<24}{'mode':<12}{'MB/s':>8}{'vs tokenizers':>15}{'vs tiktoken':>13}")
    for key, rate in rates.items():
        name, mode = key.split("|")
        hf = rates.get(f"tokenizers|{mode}")
        tk = rates.get(f"tiktoken|{mode}")
        ratio_hf = f"{rate / hf:.2f}x" if hf else "-"
        ratio_tk = f"{rate / tk:.2f}x" if tk else "-"
        print(f"  {name:<24}{mode:<12}{rate:>8.2f}{ratio_hf:>15}{ratio_tk:>13}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mb", type=float, default=10.0, help="megabytes of text to encode")
    args = parser.parse_args()
    corpus = embedded_corpus()
    training, ours, theirs_trained = bench_training(corpus, args.repeats)
    docs = held_out_documents(args.mb)
    with tempfile.TemporaryDirectory() as tmp:
        ours.save(tmp)
        encoding = bench_encoding(ours, Path(tmp) / "tokenizer.json", docs, args.repeats)
    result = {
        "corpus": f"{EMBEDDED_CORPUS_NAME} ({len(corpus)} documents, "
                  f"{sum(len(d.encode()) for d in corpus) / 1e6:.2f} MB)",
        "training": training,
        "compression_8192": compression(ours, theirs_trained, docs),
        "encoding": encoding,
        "fast_path": ours.fast_path,
        "versions": {"tokenizers": tokenizers.__version__, "tiktoken": tiktoken.__version__},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print_tables(result)
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
