"""`parrot train` and `parrot sample`: pretraining and a first look at a run (`parrot eval`
is in evaluate.py)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from parrot.training.recipes import RECIPES
    from parrot.training.vlm import VLM_RECIPES

    train = subparsers.add_parser("train", help="pretrain a model into a run directory")
    train.add_argument("--preset", required=True,
                       help=f"one of: {', '.join([*RECIPES, *VLM_RECIPES])}")
    train.add_argument("--data", nargs="+", metavar="PATH", default=None,
                       help="text files, folders or .jsonl (default: the embedded corpus)")
    train.add_argument("--text-field", default="text", help="the JSONL field holding the text")
    train.add_argument("--tokenizer", default=None, help="use this tokenizer.json, not a new one")
    train.add_argument("--objective", default=None, metavar="NAME",
                       help="training objective, e.g. mlm (short for --set train.objective=NAME)")
    train.add_argument("--out", required=True, help="the run directory to write")
    add_training_flags(train, "model, train and data")
    train.set_defaults(run=run_train)

    sample = subparsers.add_parser("sample", help="a quick sample from a run directory")
    sample.add_argument("run_dir", metavar="RUN_DIR")
    sample.add_argument("--prompt", default="", help="the text to continue")
    sample.add_argument("--max-new-tokens", type=int, default=200)
    sample.add_argument("--temperature", type=float, default=0.8, help="0 means greedy")
    sample.add_argument("--seed", type=int, default=0)
    sample.set_defaults(run=run_sample)


def add_training_flags(parser: argparse.ArgumentParser, sections: str) -> None:
    """The flags every training command shares: --set, --resume, --quiet."""
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help=f"change a setting ({sections}), e.g. train.steps=500")
    parser.add_argument("--resume", action="store_true",
                        help="continue the stopped run in --out with its saved settings "
                             "(bit-exact: as if it had never stopped)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--strategy", choices=("ddp", "fsdp"), default=None,
                        help="how torchrun's processes share the work: ddp (a full copy per "
                             "rank) or fsdp (sharded weights, gradients and optimizer state); "
                             "short for --set train.strategy=NAME")


def training_options(args: argparse.Namespace) -> dict:
    """The keywords every training command passes on: its --set, --resume and --quiet, and
    the hook the CLI adds to every run (loss.png / experts.png redrawn at checkpoints)."""
    from parrot.viz.report import RunPictures

    overrides = list(args.overrides)
    if args.strategy is not None:
        overrides.append(f"train.strategy={args.strategy}")
    return {"overrides": overrides, "resume": args.resume,
            "hooks": [RunPictures()], "show_progress": not args.quiet}


def run_train(args: argparse.Namespace) -> int:
    from parrot.api import train

    options = training_options(args)
    if args.objective is not None:
        options["overrides"].append(f"train.objective={args.objective}")
    result = train(args.preset, args.out, data=args.data, text_field=args.text_field,
                   tokenizer=args.tokenizer, **options)
    if result.final_val_loss is not None:
        print(f"{result.run_dir}: {result.steps} steps, validation loss "
              f"{result.final_val_loss:.4f}, {result.train_time_s:.1f} s training")
    return 0


def run_sample(args: argparse.Namespace) -> int:
    from parrot.api import load
    from parrot.infer import SamplingParams

    params = SamplingParams(temperature=args.temperature, seed=args.seed,
                            max_new_tokens=args.max_new_tokens)  # validated before loading
    llm = load(args.run_dir, quantize="none", max_batch=1, max_len=None, pull=False)
    tokenizer = llm.tokenizer
    prompt = tokenizer.encode(args.prompt)
    if not prompt:
        start = tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id
        prompt = [start if start is not None else tokenizer.encode("\n")[0]]
    # Up to the model's context: a long prompt keeps its end, generation stops at the end.
    completion = llm.engine.generate(prompt, params, truncate=True)
    print(args.prompt + completion.text)
    return 0
