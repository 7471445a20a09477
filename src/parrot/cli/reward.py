"""`parrot reward train` and `parrot reward score`: a reward model from ranked pairs."""

from __future__ import annotations

import argparse
import json

from parrot.cli.train import add_training_flags, training_options


def add_adapter_flags(parser: argparse.ArgumentParser) -> None:
    """The model, data and method flags `reward train` and `align dpo` share."""
    parser.add_argument("model", metavar="MODEL",
                        help="a pulled model name, GGUF file, Hugging Face folder or run directory")
    parser.add_argument("--data", required=True,
                        help="JSONL of ranked pairs: {'prompt', 'chosen', 'rejected'} (strings "
                             "or message lists) or whole 'chosen'/'rejected' conversations")
    parser.add_argument("--method", choices=("full", "lora"), default="lora")
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank r")
    parser.add_argument("--alpha", type=float, default=16.0, help="LoRA alpha (scale alpha/r)")
    parser.add_argument("--targets", default="q,k,v,o",
                        help="LoRA layers: q,k,v,o,gate,up,down or all (comma-separated)")
    parser.add_argument("--template", default=None,
                        help="chat template (default: the model's own)")
    parser.add_argument("--max-len", type=int, default=512, help="tokens kept per answer")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--out", required=True, help="the run directory to write")


def adapter_settings(args: argparse.Namespace) -> dict:
    return {"method": args.method, "rank": args.rank, "alpha": args.alpha,
            "targets": args.targets, "template": args.template, "max_len": args.max_len,
            "val_fraction": args.val_fraction}


def register(subparsers: argparse._SubParsersAction) -> None:
    reward = subparsers.add_parser("reward", help="train or apply a reward model")
    commands = reward.add_subparsers(dest="reward_command", metavar="COMMAND", required=True)
    train = commands.add_parser("train", help="train a reward model (Bradley–Terry) on pairs")
    add_adapter_flags(train)
    add_training_flags(train, "train")
    train.set_defaults(run=run_train)
    score = commands.add_parser("score", help="reward per pair and ranking accuracy")
    score.add_argument("run_dir", metavar="RUN_DIR", help="a run made by parrot reward train")
    score.add_argument("--data", required=True, help="JSONL of ranked pairs")
    score.add_argument("--out", default=None, metavar="FILE",
                       help="also write one JSON line per pair here")
    score.set_defaults(run=run_score)


def run_train(args: argparse.Namespace) -> int:
    from parrot.api import reward_train

    settings = adapter_settings(args)
    result = reward_train(args.model, args.data, args.out, **settings, **training_options(args))
    print(f"{result.run_dir}: reward model ({args.method}), {result.steps} steps")
    rows = result.metrics
    if "val_accuracy" in rows:
        print(f"held-out pairs ranked right: {rows['val_accuracy']:.3f}")
    return 0


def run_score(args: argparse.Namespace) -> int:
    from parrot.api import reward_score
    from parrot.utils.atomic import atomic_write_text

    scores = reward_score(args.run_dir, args.data)
    lines = []
    for i, (chosen, rejected) in enumerate(scores.rewards.tolist(), start=1):
        print(f"pair {i}: chosen {chosen:+.4f}  rejected {rejected:+.4f}  "
              f"margin {chosen - rejected:+.4f}")
        lines.append(json.dumps({"pair": i, "chosen": chosen, "rejected": rejected}) + "\n")
    print(f"accuracy {scores.accuracy:.4f} ({len(lines)} pairs)")
    if args.out:
        atomic_write_text(args.out, "".join(lines))
    return 0
