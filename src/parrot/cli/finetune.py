"""`parrot finetune`, `parrot merge` and `parrot distill`: adapting a pretrained model."""

from __future__ import annotations

import argparse

from parrot.cli.train import add_training_flags, training_options


def register(subparsers: argparse._SubParsersAction) -> None:
    ft = subparsers.add_parser("finetune", help="fine-tune a model on conversations (JSONL)")
    ft.add_argument("model", metavar="MODEL",
                    help="a pulled model name, GGUF file, Hugging Face folder or run directory")
    ft.add_argument("--data", required=True, help="JSONL: {'messages': [...]} or Alpaca records")
    ft.add_argument("--method", choices=("full", "lora", "soft-prompt"), default="lora")
    ft.add_argument("--rank", type=int, default=8, help="LoRA rank r")
    ft.add_argument("--alpha", type=float, default=16.0, help="LoRA alpha (scale alpha/r)")
    ft.add_argument("--targets", default="q,k,v,o",
                    help="LoRA layers: q,k,v,o,gate,up,down or all (comma-separated)")
    ft.add_argument("--lora-dropout", type=float, default=0.0)
    ft.add_argument("--quantize", choices=("int8",), default=None,
                    help="keep the frozen base's Linear weights int8 in memory (QLoRA-style)")
    ft.add_argument("--prompt-tokens", type=int, default=16, help="soft-prompt length N")
    ft.add_argument("--template", default=None, help="chat template (default: the model's own)")
    ft.add_argument("--max-len", type=int, default=512, help="tokens kept per example")
    ft.add_argument("--val-fraction", type=float, default=0.1)
    ft.add_argument("--out", required=True, help="the run directory to write")
    add_training_flags(ft, "train")
    ft.set_defaults(run=run_finetune)

    merge = subparsers.add_parser("merge", help="fold a LoRA run's adapter into the weights")
    merge.add_argument("run_dir", metavar="RUN_DIR")
    merge.add_argument("--out", required=True, help="the run directory to write")
    merge.set_defaults(run=run_merge)

    distill = subparsers.add_parser("distill", help="train a student on a teacher's soft targets")
    distill.add_argument("--teacher", required=True, metavar="MODEL")
    distill.add_argument("--student", required=True, metavar="PRESET_OR_RUN",
                         help="a model preset (fresh weights) or a run directory")
    distill.add_argument("--data", nargs="+", default=None, metavar="PATH",
                         help="text files, folders or .jsonl (default: the embedded corpus)")
    distill.add_argument("--temperature", type=float, default=2.0)
    distill.add_argument("--alpha", type=float, default=0.5, help="weight of the soft loss")
    distill.add_argument("--teacher-cache", default=None, metavar="DIR",
                         help="store the teacher's top-k logits here and reuse them on later "
                              "runs over the same teacher and data (no teacher forward)")
    distill.add_argument("--top-k", type=int, default=64,
                         help="teacher logits kept per position in the cache")
    distill.add_argument("--out", required=True)
    add_training_flags(distill, "train, and model for a preset student")
    distill.set_defaults(run=run_distill)


def run_finetune(args: argparse.Namespace) -> int:
    from parrot.api import finetune

    result = finetune(args.model, args.data, args.out, method=args.method, rank=args.rank,
                      alpha=args.alpha, targets=args.targets, dropout=args.lora_dropout,
                      prompt_tokens=args.prompt_tokens, template=args.template,
                      max_len=args.max_len, val_fraction=args.val_fraction,
                      quantize=args.quantize, **training_options(args))
    trainable, total = (result.metrics[k] for k in ("trainable_parameters", "total_parameters"))
    print(f"{result.run_dir}: {args.method}, {result.steps} steps, trainable parameters "
          f"{trainable:,} of {total:,} ({100 * trainable / max(1, total):.3f}%)")
    if result.final_val_loss is not None:
        print(f"validation loss (assistant tokens): {result.metrics['val_loss_before']:.4f} "
              f"before, {result.final_val_loss:.4f} after")
    return 0


def run_merge(args: argparse.Namespace) -> int:
    from parrot.api import merge

    out = merge(args.run_dir, args.out)
    print(f"{out}: merged weights written (a plain run directory)")
    return 0


def run_distill(args: argparse.Namespace) -> int:
    from parrot.api import distill

    result = distill(args.teacher, args.student, args.out, data=args.data,
                     temperature=args.temperature, alpha=args.alpha, top_k=args.top_k,
                     teacher_cache=args.teacher_cache, **training_options(args))
    print(f"{result.run_dir}: {result.steps} steps, validation loss (hard labels) "
          f"{result.final_val_loss:.4f}")
    return 0
