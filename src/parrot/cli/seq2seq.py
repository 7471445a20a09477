"""`parrot seq2seq train | generate | eval`: encoder-decoder models on source/target pairs.

    parrot seq2seq train --data pairs.jsonl --preset seq2seq-tiny --out RUN
    parrot seq2seq generate RUN "three hundred and forty-two"
    parrot seq2seq eval RUN --data test.jsonl          (exact-match accuracy)

`parrot generate` and `parrot chat` are for decoder-only models; an encoder-decoder run
generates through `parrot seq2seq generate` (encoder once, cached decoder).
"""

from __future__ import annotations

import argparse
import json

from parrot.cli.train import add_training_flags, training_options


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("seq2seq", help="train and run encoder-decoder models")
    commands = parser.add_subparsers(dest="seq2seq_command", metavar="COMMAND", required=True)

    train = commands.add_parser("train", help="train on JSONL source/target pairs")
    train.add_argument("--data", required=True, metavar="PAIRS.jsonl")
    train.add_argument("--preset", default="seq2seq-tiny", help="an encoder-decoder recipe")
    train.add_argument("--out", required=True, help="the run directory to write")
    _field_flags(train)
    add_training_flags(train, "model, train and data")
    train.set_defaults(run=run_train)

    generate = commands.add_parser("generate", help="generate targets for source texts")
    generate.add_argument("run_dir", metavar="RUN")
    generate.add_argument("texts", nargs="+", metavar="TEXT")
    generate.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    generate.add_argument("--top-k", type=int, default=0, help="0 = off")
    generate.add_argument("--top-p", type=float, default=1.0, help="1 = off")
    generate.add_argument("--seed", type=int, default=None)
    generate.add_argument("--max-new-tokens", type=int, default=64)
    generate.add_argument("--json", action="store_true", help="one JSON line per text")
    generate.set_defaults(run=run_generate)

    evaluate = commands.add_parser("eval", help="exact-match accuracy on JSONL pairs")
    evaluate.add_argument("run_dir", metavar="RUN")
    evaluate.add_argument("--data", required=True, metavar="PAIRS.jsonl")
    _field_flags(evaluate)
    evaluate.add_argument("--show", type=int, default=5, help="print this many mistakes")
    evaluate.set_defaults(run=run_eval)


def _field_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source-field", default="source", help="the JSONL source field")
    parser.add_argument("--target-field", default="target", help="the JSONL target field")


def run_train(args: argparse.Namespace) -> int:
    from parrot.api import seq2seq_train

    result = seq2seq_train(args.data, args.out, preset=args.preset,
                           source_field=args.source_field, target_field=args.target_field,
                           **training_options(args))
    loss = "n/a" if result.final_val_loss is None else f"{result.final_val_loss:.4f}"
    print(f"{result.run_dir}: {result.steps} steps, validation loss {loss}, exact match "
          f"{result.metrics['val_exact_match']:.1%} on {result.metrics['val_pairs']} "
          f"validation pairs, {result.train_time_s:.1f} s training")
    return 0


def run_generate(args: argparse.Namespace) -> int:
    from parrot.infer.sampling import SamplingParams
    from parrot.training.seq2seq import generate_targets, load_seq2seq

    # SamplingParams validates the flags (a ParrotError) before the model loads.
    params = SamplingParams(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                            seed=args.seed, max_new_tokens=args.max_new_tokens)
    model, tokenizer, tokens = load_seq2seq(args.run_dir)
    # The engine: each source encoded once, decoders cached and batched together.
    outputs = generate_targets(model, tokenizer, tokens, args.texts, params, batch_size=8)
    for text, output in zip(args.texts, outputs, strict=True):
        print(json.dumps({"source": text, "output": output}, ensure_ascii=False)
              if args.json else output)
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from parrot.data.pairs import load_pairs
    from parrot.training.seq2seq import generate_targets, load_seq2seq

    pairs = load_pairs(args.data, args.source_field, args.target_field)
    model, tokenizer, tokens = load_seq2seq(args.run_dir)
    outputs = generate_targets(model, tokenizer, tokens, [p.source for p in pairs])
    wrong = [(p, o) for p, o in zip(pairs, outputs, strict=True) if o != p.target]
    for pair, output in wrong[: args.show]:
        print(f"  {pair.source!r}: expected {pair.target!r}, got {output!r}")
    right = len(pairs) - len(wrong)
    print(f"exact match {right}/{len(pairs)} = {right / len(pairs):.1%}")
    return 0
