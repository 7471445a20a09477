"""`parrot viz ...`: pictures of tokens, attention, embeddings, positions, softmax, runs.

Each command computes with `parrot.viz`, writes a PNG (or HTML) to --out and prints its path.
A MODEL is loaded with `parrot.load_model`: unprepared float weights, so attention can be captured.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from parrot.errors import ParrotError
from parrot.utils.atomic import atomic_write_text


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser("viz", help="pictures of what happens inside a model")
    commands = group.add_subparsers(dest="viz_command", metavar="KIND")
    group.set_defaults(run=lambda args: group.print_help() or 2)

    _register_model_kinds(commands)
    _register_other_kinds(commands)


def _register_model_kinds(commands: argparse._SubParsersAction) -> None:
    """The kinds that read a model: tokens, attention, embeddings, softmax."""
    tokens = _add(commands, "tokens", "how a text splits into tokens (PNG or .html)", run_tokens)
    tokens.add_argument("text", help="the text to split")

    attention = _add(commands, "attention", "attention weight heatmaps", run_attention)
    attention.add_argument("text", help="the text to run through the model")
    attention.add_argument("--layer", type=int, default=None, help="one layer (from 0)")
    attention.add_argument("--head", type=int, default=None, help="one head of --layer")
    attention.add_argument("--all", action="store_true", help="every layer and head (default)")
    attention.add_argument("--image", default=None, metavar="PATH",
                           help="a picture (PNG/JPEG) for a vision-language model: draws the "
                                "question's attention on the picture's patches")

    embeddings = _add(commands, "embeddings", "neighbours, analogies, PCA of token embeddings",
                      run_embeddings)
    embeddings.add_argument("--words", nargs="+", default=[], metavar="WORD",
                            help="words to plot, each one token (tried with a leading space, then as "
                                 "written; a word that splits is refused); default: learned words")
    embeddings.add_argument("--analogy", nargs=3, default=None, metavar=("A", "B", "C"),
                            help="show the tokens nearest to A - B + C")
    embeddings.add_argument("--k", type=int, default=5, help="neighbours per word")

    softmax = _add(commands, "softmax", "next-token distribution at several temperatures",
                   run_softmax)
    softmax.add_argument("prompt", help="the text whose next token is predicted")
    softmax.add_argument("--temperatures", default="0.5,1,1.5", help="comma-separated, > 0")
    softmax.add_argument("--top-n", type=int, default=20, help="tokens to show")
    softmax.add_argument("--top-k", type=int, default=10, help="the top-k filter to show")
    softmax.add_argument("--top-p", type=float, default=0.9, help="the top-p filter to show")


def _register_other_kinds(commands: argparse._SubParsersAction) -> None:
    """Position patterns (no model needed) and training-run reports."""
    positions = _add(commands, "positions", "position encoding patterns", run_positions,
                     model=False)
    positions.add_argument("--kind", required=True, choices=("sinusoidal", "rope", "alibi"))
    positions.add_argument("--dim", type=int, default=64, help="model or head dimension")
    positions.add_argument("--length", type=int, default=64, help="number of positions")
    positions.add_argument("--heads", type=int, default=8, help="ALiBi heads")
    positions.add_argument("--theta", type=float, default=10000.0, help="RoPE base")

    experts = commands.add_parser("experts", help="expert load of a mixture-of-experts run")
    experts.add_argument("run_dir", metavar="RUN_DIR")
    experts.add_argument("--out", default=None, help="PNG file (default RUN_DIR/experts.png)")
    experts.set_defaults(run=run_experts)

    run = commands.add_parser("run", help="an HTML report of a training run")
    run.add_argument("run_dir", metavar="RUN_DIR")
    run.add_argument("--out", default=None, help="HTML file (default RUN_DIR/report.html)")
    run.set_defaults(run=run_run)


def _add(commands: argparse._SubParsersAction, name: str, help: str, fn: Any,
         model: bool = True) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help)
    if model:
        parser.add_argument("model", metavar="MODEL", help="a run directory")
    parser.add_argument("--out", default=f"viz-{name}.png", help=f"output file (viz-{name}.png)")
    parser.set_defaults(run=fn)
    return parser


def _write(picture: Any, out: str) -> int:
    """Write a figure (as PNG) or an HTML page (a str) to `out`, and print the path."""
    from parrot.viz import save_png

    if isinstance(picture, str):
        atomic_write_text(out, picture)
    elif Path(out).suffix.lower() != ".png":
        raise ParrotError(f"--out must name a .png file, got {out}.")
    else:
        save_png(picture, out)
    print(out)
    return 0


def run_tokens(args: argparse.Namespace) -> int:
    from rich.console import Console

    from parrot.api import load_model
    from parrot.viz import token_pieces, tokens_figure, tokens_html, tokens_rich

    _, tokenizer, _ = load_model(args.model)
    pieces = token_pieces(tokenizer, args.text)
    Console(soft_wrap=True).print(tokens_rich(pieces))
    as_html = Path(args.out).suffix.lower() in (".html", ".htm")
    return _write(tokens_html(pieces) if as_html else tokens_figure(pieces), args.out)


def run_attention(args: argparse.Namespace) -> int:
    from parrot.api import load_model
    from parrot.viz import attention_figure, attention_maps

    if args.all and (args.layer is not None or args.head is not None):
        raise ParrotError("--all shows every layer and head; drop it or drop --layer/--head.")
    model, tokenizer, _ = load_model(args.model)
    if args.image is not None:
        from parrot.viz.image_attention import patch_attention, patch_attention_figure

        view = patch_attention(model, tokenizer, args.text, args.image)
        shares = ", ".join(f"{s:.0%}" for s in view.image_share)
        print(f"attention of the last prompt token on the picture, by layer: {shares}")
        return _write(patch_attention_figure(view), args.out)
    maps = attention_maps(model, tokenizer, args.text)
    return _write(attention_figure(maps, args.layer, args.head), args.out)


def run_embeddings(args: argparse.Namespace) -> int:
    from parrot.api import load_model
    from parrot.viz import embedding_view, embeddings_figure
    from parrot.viz.embeddings import neighbour_lines

    if args.k < 1:
        raise ParrotError(f"--k must be at least 1, got {args.k}.")
    model, tokenizer, _ = load_model(args.model)
    view = embedding_view(model, tokenizer, args.words, args.analogy or (), args.k)
    print("\n".join(neighbour_lines(view)))
    return _write(embeddings_figure(view), args.out)


def run_positions(args: argparse.Namespace) -> int:
    from parrot.viz import position_pattern, positions_figure

    pattern = position_pattern(args.kind, args.dim, args.length, args.heads, args.theta)
    return _write(positions_figure(pattern), args.out)


def run_softmax(args: argparse.Namespace) -> int:
    from parrot.api import load_model
    from parrot.viz import next_token_logits, softmax_figure, softmax_view
    from parrot.viz.softmax import parse_temperatures

    temperatures = parse_temperatures(args.temperatures)
    if args.top_n < 1:
        raise ParrotError(f"--top-n must be at least 1, got {args.top_n}.")
    model, tokenizer, _ = load_model(args.model)
    logits = next_token_logits(model, tokenizer, args.prompt)
    view = softmax_view(logits, tokenizer, temperatures, args.top_n, args.top_k, args.top_p)
    return _write(softmax_figure(view, args.prompt), args.out)


def run_experts(args: argparse.Namespace) -> int:
    from parrot.viz.experts import expert_load_history, experts_figure

    history = expert_load_history(args.run_dir)
    last = ", ".join(f"{h:.3f}" for h in history.entropy[-1])
    print(f"step {history.steps[-1]}: load entropy per layer {last} "
          f"(max ln {history.n_experts} = {math.log(history.n_experts):.3f})")
    return _write(experts_figure(history), args.out or str(Path(args.run_dir) / "experts.png"))


def run_run(args: argparse.Namespace) -> int:
    from parrot.viz import report_html, run_report

    out = args.out or str(Path(args.run_dir) / "report.html")
    return _write(report_html(run_report(args.run_dir)), out)
