"""`parrot demo`: the main job on its embedded default, run by `make run`.

It trains a byte-level BPE tokenizer on the embedded corpus (the Python documentation that
ships with every Python) and shows how sample sentences split into tokens.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

DEMO_SENTENCES = (
    "The batrachomachia, or battle of the frogs and mice, is a mock epic.",
    "def fibonacci(n): return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="train a tokenizer on the embedded corpus and show how text splits"
    )
    parser.add_argument("--out", default="runs/demo", help="where to write the run (default runs/demo)")
    parser.add_argument("--vocab-size", type=int, default=4096, help="tokenizer vocabulary size")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from parrot.cli.tokenizer import print_token_table
    from parrot.data.corpus import EMBEDDED_CORPUS_NAME, embedded_corpus
    from parrot.tokenizer import Tokenizer

    docs = embedded_corpus()
    size = sum(len(d.encode("utf-8")) for d in docs)
    print(f"corpus: {EMBEDDED_CORPUS_NAME}, {len(docs):,} documents, {size / 1e6:.1f} MB")
    start = time.perf_counter()
    tokenizer = Tokenizer.train(docs, vocab_size=args.vocab_size, special_tokens=["<|endoftext|>"])
    print(f"trained a {tokenizer.vocab_size:,}-token BPE tokenizer in {time.perf_counter() - start:.1f} s")
    out = Path(args.out)
    tokenizer.save(out)
    print(f"saved {out / 'tokenizer.json'}")
    for sentence in DEMO_SENTENCES:
        print()
        print_token_table(tokenizer, sentence)
    return 0
