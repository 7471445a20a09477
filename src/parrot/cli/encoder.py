"""`parrot fill-mask MODEL TEXT` and `parrot embed MODEL TEXT...`: using encoder models.

MODEL is anything `parrot generate` takes: a pulled name (`minilm-l6`), a Hugging Face
folder (BERT) or a run directory trained with `--objective mlm`.
"""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    fill = subparsers.add_parser("fill-mask", help="top guesses for each [MASK] in a text")
    fill.add_argument("model", metavar="MODEL", help="a masked-LM run directory or BERT folder")
    fill.add_argument("text", metavar="TEXT", help='e.g. "The capital of France is [MASK]."')
    fill.add_argument("--top-k", type=int, default=5, help="candidates per mask (default 5)")
    fill.add_argument("--json", action="store_true", help="print JSON")
    fill.add_argument("--device", default="cpu")
    fill.set_defaults(run=run_fill_mask)

    embed = subparsers.add_parser("embed", help="sentence embeddings (mean pooling, L2 norm)")
    embed.add_argument("model", metavar="MODEL", help="e.g. minilm-l6 (pulled on first use)")
    embed.add_argument("texts", metavar="TEXT", nargs="+", help="the texts to embed")
    embed.add_argument("--pooling", choices=["mean", "cls"], default=None,
                       help="default: the model's own setting, else mean")
    embed.add_argument("--no-normalize", action="store_true", help="skip L2 normalization")
    embed.add_argument("--json", action="store_true",
                       help="print {model, dimensions, embeddings} as JSON")
    embed.add_argument("--device", default="cpu")
    embed.set_defaults(run=run_embed)


def run_fill_mask(args: argparse.Namespace) -> int:
    from parrot.api import load
    from parrot.errors import ParrotError

    if args.top_k < 1:
        raise ParrotError(f"--top-k must be at least 1, got {args.top_k}.")
    results = load(args.model, device=args.device).fill_mask(args.text, args.top_k)
    if args.json:
        print(json.dumps([[c.__dict__ for c in row] for row in results], ensure_ascii=False))
        return 0
    for m, row in enumerate(results):
        if len(results) > 1:
            print(f"mask {m + 1}:")
        for c in row:
            sequence = c.sequence.replace("\n", "\\n")
            print(f"  {c.probability:6.1%}  {c.token!r:16}  {sequence}")
    return 0


def run_embed(args: argparse.Namespace) -> int:
    from parrot.api import load

    vectors = load(args.model, device=args.device).embed(
        args.texts, pooling=args.pooling, normalize=not args.no_normalize)
    if args.json:
        print(json.dumps({"model": args.model, "dimensions": vectors.shape[1],
                          "embeddings": vectors.tolist()}))
        return 0
    for text, vector in zip(args.texts, vectors.tolist(), strict=True):
        head = ", ".join(f"{x:+.4f}" for x in vector[:6])
        print(f"{text[:40]!r:44} [{head}, ...] ({len(vector)} dims)")
    if len(args.texts) > 1:
        from parrot.model.pooling import l2_normalize

        unit = l2_normalize(vectors)
        print("cosine similarity:")
        for i, row in enumerate((unit @ unit.T).tolist()):
            print(f"  {i + 1:>3}: " + " ".join(f"{s:6.3f}" for s in row))
    return 0
