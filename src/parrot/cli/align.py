"""`parrot align dpo`: tune a model on ranked pairs with Direct Preference Optimization."""

from __future__ import annotations

import argparse

from parrot.cli.reward import adapter_settings, add_adapter_flags
from parrot.cli.train import add_training_flags, training_options


def register(subparsers: argparse._SubParsersAction) -> None:
    align = subparsers.add_parser("align", help="preference tuning (DPO)")
    commands = align.add_subparsers(dest="align_command", metavar="COMMAND", required=True)
    dpo = commands.add_parser("dpo", help="DPO against a frozen reference (default: MODEL)")
    add_adapter_flags(dpo)
    dpo.add_argument("--beta", type=float, default=0.1,
                     help="β > 0: the implicit reward's scale (larger stays closer to the reference)")
    dpo.add_argument("--loss", choices=("sigmoid", "ipo"), default="sigmoid")
    dpo.add_argument("--label-smoothing", type=float, default=0.0,
                     help="ε in [0, 0.5): conservative DPO, pairs taken as flipped with prob. ε")
    dpo.add_argument("--ref", default=None, metavar="MODEL",
                     help="the frozen reference model (default: MODEL itself)")
    dpo.add_argument("--ref-cache", default=None, metavar="DIR",
                     help="where the reference log-probs are cached (default RUN/ref_cache)")
    add_training_flags(dpo, "train")
    dpo.set_defaults(run=run_dpo)


def run_dpo(args: argparse.Namespace) -> int:
    from parrot.api import dpo

    result = dpo(args.model, args.data, args.out, beta=args.beta, loss=args.loss,
                 label_smoothing=args.label_smoothing, reference=args.ref,
                 ref_cache=args.ref_cache, **adapter_settings(args), **training_options(args))
    print(f"{result.run_dir}: DPO ({args.method}, {args.loss}, β={args.beta}), "
          f"{result.steps} steps")
    if result.final_val_loss is not None:
        m = result.metrics
        print(f"held-out DPO loss {m.get('val_loss_before', float('nan')):.4f} before, "
              f"{result.final_val_loss:.4f} after; held-out reward accuracy "
              f"{m.get('val_rewards/accuracies', float('nan')):.3f}, margin "
              f"{m.get('val_rewards/margins', float('nan')):+.4f}")
    return 0
