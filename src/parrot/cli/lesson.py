"""`parrot lesson rnn --out DIR`: lessons that train models and draw what they learned."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("lesson", help="train and compare models for one idea")
    commands = parser.add_subparsers(dest="lesson_command", metavar="LESSON", required=True)
    rnn = commands.add_parser("rnn", help="the fixed-vector bottleneck of RNN encoder-decoders "
                                          "and the attention that removed it")
    rnn.add_argument("--out", required=True, help="the lesson folder (resumed if present)")
    rnn.add_argument("--steps", type=int, default=1500, help="optimizer steps per model")
    rnn.add_argument("--pairs", type=int, default=6000, help="training pairs")
    rnn.add_argument("--test-pairs", type=int, default=800)
    rnn.add_argument("--batch-size", type=int, default=32)
    rnn.add_argument("--d-hidden", type=int, default=128, help="GRU state size")
    rnn.add_argument("--seed", type=int, default=0)
    rnn.add_argument("--only", default=None, metavar="MODEL",
                     help="train just gru-fixed, gru-attention or transformer (run three at "
                          "once, then once more without --only to score them)")
    rnn.add_argument("--quiet", action="store_true", help="no progress bars")
    rnn.set_defaults(run=run_rnn)


def run_rnn(args: argparse.Namespace) -> int:
    from parrot.lessons import rnn_lesson

    record = rnn_lesson(args.out, steps=args.steps, pairs=args.pairs,
                        test_pairs=args.test_pairs, batch_size=args.batch_size,
                        d_hidden=args.d_hidden, seed=args.seed, only=args.only,
                        show_progress=not args.quiet)
    if record is None:
        print(f"trained {args.only} in {args.out}/{args.only}")
        return 0
    print(f"{'model':>14} {'params':>8} {'exact match':>12} {'token acc':>10}")
    for name, result in record["models"].items():
        print(f"{name:>14} {result['parameters']:>8} {result['exact_match']:>12.3f} "
              f"{result['token_accuracy']:>10.3f}")
    print(f"wrote {args.out}/lesson.json, accuracy_by_length.png, alignment.png")
    return 0
