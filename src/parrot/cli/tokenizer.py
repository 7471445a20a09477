"""`parrot tokenizer train` and `parrot tokenize`: learn a BPE vocabulary, look inside one."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from parrot.errors import ParrotError
from parrot.tokenizer import PATTERNS, Tokenizer
from parrot.utils.text import visible_piece


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser("tokenizer", help="train byte-level BPE tokenizers")
    commands = group.add_subparsers(dest="tokenizer_command", metavar="COMMAND")
    train = commands.add_parser("train", help="train a tokenizer and save tokenizer.json")
    train.add_argument("--data", nargs="+", metavar="PATH", default=None,
                       help="files, folders or .jsonl (default: the embedded corpus)")
    train.add_argument("--vocab-size", type=int, required=True, help="total vocabulary size")
    train.add_argument("--out", required=True, help="directory to write tokenizer.json into")
    train.add_argument("--pattern", default="gpt2", choices=sorted(PATTERNS),
                       help="pre-tokenization split pattern (default gpt2)")
    train.add_argument("--special", nargs="*", default=[], metavar="TOKEN",
                       help="special tokens, e.g. '<|endoftext|>' '[PAD]'")
    train.add_argument("--text-field", default="text", help="JSONL field holding the text")
    train.set_defaults(run=run_train)
    group.set_defaults(run=lambda args: group.print_help() or 2)

    show = subparsers.add_parser("tokenize", help="show how text splits into tokens")
    show.add_argument("model", metavar="MODEL",
                      help="a tokenizer.json, a folder holding one, or any MODEL (a pulled "
                           "name, a GGUF file, a Hugging Face folder or a run directory)")
    show.add_argument("text", nargs="?", default=None, help="the text to split")
    show.add_argument("--ids", nargs="+", type=int, default=None, help="decode these ids instead")
    show.set_defaults(run=run_tokenize)


def run_train(args: argparse.Namespace) -> int:
    from parrot.data.corpus import EMBEDDED_CORPUS_NAME, load_texts
    from parrot.tokenizer.tokenizer import check_vocab_size
    from parrot.utils.progress import progress_bar

    check_vocab_size(args.vocab_size, args.special)
    texts = load_texts(args.data, text_field=args.text_field)
    size = sum(len(t.encode("utf-8")) for t in texts)
    source = EMBEDDED_CORPUS_NAME if args.data is None else ", ".join(args.data)
    print(f"corpus: {source}: {len(texts):,} documents, {size / 1e6:.2f} MB")
    total = max(args.vocab_size - 256 - len(set(args.special)), 0)
    start = time.perf_counter()
    with progress_bar("learning merges", total=total, enabled=sys.stderr.isatty()) as bar:

        def on_merge(done: int, _total: int) -> None:
            if done % 64 == 0 or done == total:
                bar.update(0, completed=done)

        tokenizer = Tokenizer.train(texts, args.vocab_size, pattern=args.pattern,
                                    special_tokens=args.special, on_merge=on_merge)
    tokenizer.save(args.out)
    seconds = time.perf_counter() - start
    if tokenizer.vocab_size < args.vocab_size:
        print(f"note: the text ran out of pairs to merge before {args.vocab_size:,} tokens")
    print(f"trained {tokenizer.vocab_size:,} tokens in {seconds:.1f} s; "
          f"wrote {Path(args.out) / 'tokenizer.json'}")
    return 0


def run_tokenize(args: argparse.Namespace) -> int:
    from parrot.api import load_tokenizer

    tokenizer = load_tokenizer(args.model)
    if args.ids is not None:
        print(tokenizer.decode(args.ids))
        print_id_table(tokenizer, args.ids)
    elif args.text is not None:
        print_token_table(tokenizer, args.text)
    else:
        raise ParrotError("give the text to tokenize, or --ids to decode ids.")
    return 0


def print_token_table(tokenizer: Tokenizer, text: str) -> None:
    """Print how `text` splits: one row per token with its piece, id and byte count."""
    ids = tokenizer.encode(text, allowed_special="all")
    size = len(text.encode("utf-8"))
    print(f"{text!r}: {size} bytes → {len(ids)} tokens ({size / max(len(ids), 1):.2f} bytes/token)")
    print_id_table(tokenizer, ids)


def print_id_table(tokenizer: Tokenizer, ids: list[int]) -> None:
    table = Table("#", "piece", "id", "bytes")
    for position, token in enumerate(ids):
        raw = tokenizer.token_bytes(token)
        piece = visible_piece(raw).replace("[", "\\[")  # rich would read "[...]" as markup
        table.add_row(str(position), piece, str(token), str(len(raw)))
    Console(soft_wrap=True).print(table)

