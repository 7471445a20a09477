"""`parrot analyze heads MODEL` and `parrot prune MODEL --heads F --out DIR`.

    parrot analyze heads runs/tiny --data notes.txt --out runs/tiny-heads
    parrot prune runs/tiny --heads 0.5 --out runs/tiny-pruned    (then chat, serve, export)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _data_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", nargs="+", metavar="PATH", default=None,
                        help="text files, folders or .jsonl (default: the embedded corpus)")
    parser.add_argument("--text-field", default="text", help="the JSONL field holding text")
    parser.add_argument("--seq-len", type=int, default=128, help="tokens per window")
    parser.add_argument("--windows", type=int, default=8, help="how many windows to score")


def register(subparsers: argparse._SubParsersAction) -> None:
    analyze = subparsers.add_parser("analyze", help="look inside a model")
    commands = analyze.add_subparsers(dest="analyze_command", metavar="COMMAND", required=True)
    heads = commands.add_parser("heads", help="head importance E|dL/dxi| and ablation")
    heads.add_argument("model", metavar="MODEL")
    _data_flags(heads)
    heads.add_argument("--no-ablation", action="store_true",
                       help="skip single-head ablation (n_layers x n_heads forward passes)")
    heads.add_argument("--out", default=None, help="write heads.json and heads.png here")
    heads.set_defaults(run=run_heads)

    prune = subparsers.add_parser("prune", help="remove the least important attention heads")
    prune.add_argument("model", metavar="MODEL")
    prune.add_argument("--heads", type=float, required=True,
                       help="the fraction of heads to remove, in (0, 1)")
    prune.add_argument("--unit", choices=("auto", "group", "query"), default="auto",
                       help="group: whole KV groups; query: query heads inside every group; "
                            "auto: query when groups hold several query heads, else group")
    prune.add_argument("--order", choices=("importance", "random"), default="importance")
    prune.add_argument("--seed", type=int, default=0, help="for --order random")
    prune.add_argument("--out", required=True, help="the run directory to write")
    _data_flags(prune)
    prune.set_defaults(run=run_prune)


def run_heads(args: argparse.Namespace) -> int:
    from parrot.analysis import analyze_heads
    from parrot.eval.heads import spearman

    report = analyze_heads(args.model, args.data, seq_len=args.seq_len, windows=args.windows,
                           ablation=not args.no_ablation, text_field=args.text_field)
    imp = report.importance
    print(f"{imp.shape[0]} layers x {imp.shape[1]} heads, loss {report.base_loss:.4f} on "
          f"{report.tokens} tokens")
    for layer, row in enumerate(imp.tolist()):
        print(f"  layer {layer:2d}  " + " ".join(f"{v:.3g}" for v in row))
    if report.ablation is not None:
        print(f"Spearman(importance, ablation) = {spearman(imp, report.ablation):.3f}")
    if args.out:
        from parrot.viz.figure import save_png
        from parrot.viz.heads import heads_figure

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        record = {"model": str(args.model), "base_loss": report.base_loss,
                  "tokens": report.tokens, "importance": imp.tolist(),
                  "ablation": None if report.ablation is None else report.ablation.tolist()}
        (out / "heads.json").write_text(json.dumps(record, indent=1) + "\n")
        save_png(heads_figure(imp, report.ablation, str(args.model)), out / "heads.png")
        print(f"wrote {out / 'heads.json'} and {out / 'heads.png'}")
    return 0


def run_prune(args: argparse.Namespace) -> int:
    from parrot.analysis import prune
    from parrot.rundir import read_config

    out = prune(args.model, args.out, heads=args.heads, data=args.data, unit=args.unit,
                order=args.order, seed=args.seed, seq_len=args.seq_len, windows=args.windows,
                text_field=args.text_field)
    info = read_config(out)
    cfg = info["model"]
    print(f"{out}: {info['pruned']['heads_before']} -> {cfg['n_heads']} heads per layer "
          f"({cfg['n_kv_heads'] or cfg['n_heads']} KV heads)")
    return 0
