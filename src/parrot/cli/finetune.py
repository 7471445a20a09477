"""`parrot finetune`, `parrot merge` and `parrot distill`: adapting a pretrained model."""

from __future__ import annotations

import argparse

from parrot.errors import ParrotError


def _train_flags(parser: argparse.ArgumentParser, steps: int, lr: float) -> None:
    group = parser.add_argument_group("training")
    group.add_argument("--steps", type=int, default=steps)
    group.add_argument("--batch-size", type=int, default=4)
    group.add_argument("--lr", type=float, default=lr)
    group.add_argument("--warmup", type=int, default=None, help="default: steps // 10")
    group.add_argument("--eval-every", type=int, default=None, help="default: steps // 4")
    group.add_argument("--checkpoint-every", type=int, default=None,
                       help="steps between checkpoints that --resume continues from "
                            "(default: as --eval-every)")
    group.add_argument("--resume", action="store_true",
                       help="continue the stopped run in --out with its saved settings "
                            "(bit-exact: as if it had never stopped)")
    group.add_argument("--seed", type=int, default=1337)
    group.add_argument("--threads", type=int, default=None)
    group.add_argument("--device", default="cpu")
    group.add_argument("--quiet", action="store_true", help="no progress bar")


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
    _train_flags(ft, steps=100, lr=1e-3)
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
    distill.add_argument("--seq-len", type=int, default=128)
    distill.add_argument("--teacher-cache", default=None, metavar="DIR",
                         help="store the teacher's top-k logits here and reuse them on later "
                              "runs over the same teacher and data (no teacher forward)")
    distill.add_argument("--top-k", type=int, default=64,
                         help="teacher logits kept per position in the cache")
    distill.add_argument("--set", dest="overrides", action="append", default=[],
                         metavar="KEY=VALUE", help="change a student model field, e.g. n_layers=2")
    distill.add_argument("--out", required=True)
    _train_flags(distill, steps=200, lr=3e-3)
    distill.set_defaults(run=run_distill)


def _train_config(args: argparse.Namespace, weight_decay: float):
    from parrot.train.config import TrainConfig

    if args.steps < 1:
        raise ParrotError(f"--steps must be at least 1, got {args.steps}.")
    warmup = args.warmup if args.warmup is not None else args.steps // 10
    eval_every = args.eval_every or max(1, args.steps // 4)
    every = args.checkpoint_every or eval_every
    if every < 1:
        raise ParrotError(f"--checkpoint-every must be at least 1, got {every}.")
    return TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                       min_lr=args.lr / 10, warmup=warmup, weight_decay=weight_decay,
                       eval_every=eval_every, checkpoint_every=every,
                       log_every=max(1, min(10, args.steps // 10)), seed=args.seed,
                       device=args.device, threads=args.threads)


def run_finetune(args: argparse.Namespace) -> int:
    from parrot.train.finetune import FinetuneConfig, finetune

    cfg = FinetuneConfig(method=args.method, rank=args.rank, alpha=args.alpha,
                         targets=args.targets, dropout=args.lora_dropout,
                         prompt_tokens=args.prompt_tokens, template=args.template,
                         max_len=args.max_len, val_fraction=args.val_fraction,
                         quantize=args.quantize)
    train = _train_config(args, weight_decay=0.0)
    result = finetune(args.model, args.data, args.out, cfg, train, show_progress=not args.quiet,
                      resume=args.resume)
    share = 100 * result.trainable_parameters / max(1, result.total_parameters)
    print(f"{result.run_dir}: {args.method}, {result.steps} steps, trainable parameters "
          f"{result.trainable_parameters:,} of {result.total_parameters:,} ({share:.3f}%)")
    if result.val_loss_after is not None:
        print(f"validation loss (assistant tokens): {result.val_loss_before:.4f} before, "
              f"{result.val_loss_after:.4f} after")
    return 0


def run_merge(args: argparse.Namespace) -> int:
    from parrot.train.finetune import merge_run

    out = merge_run(args.run_dir, args.out)
    print(f"{out}: merged weights written (a plain run directory)")
    return 0


def run_distill(args: argparse.Namespace) -> int:
    from parrot.train.distill import DistillConfig, distill

    cfg = DistillConfig(temperature=args.temperature, alpha=args.alpha, seq_len=args.seq_len,
                        top_k=args.top_k)
    train = _train_config(args, weight_decay=0.1)
    result = distill(args.teacher, args.student, args.out, data=args.data, cfg=cfg,
                     train=train, overrides=args.overrides, show_progress=not args.quiet,
                     resume=args.resume, teacher_cache=args.teacher_cache)
    print(f"{result.run_dir}: {result.steps} steps, validation loss (hard labels) "
          f"{result.final_val_loss:.4f}")
    return 0
