"""`parrot generate MODEL --prompt TEXT`: one completion, streamed or as JSON.

Also home of what the chat command shares: model resolution and the sampling flags.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from parrot.infer import Engine, SamplingParams

# The engine's KV cache is allocated for this many positions at most, so a model with a
# long context (SmolLM2: 8,192) does not reserve hundreds of megabytes a terminal never uses.
CLI_MAX_LEN = 4096


def resolve_model(spec: str, device: str = "cpu") -> tuple[Any, Any]:
    """(model, tokenizer) for a MODEL argument (see `load_engine` for what MODEL may be)."""
    from parrot.hub.resolve import resolve_model as hub_resolve

    model, tokenizer, _ = hub_resolve(spec, device, pull_missing=True, log=_log)
    return model, tokenizer


def load_engine(spec: str, device: str = "cpu", max_batch: int = 1, quantize: str = "auto",
                compile: bool = False) -> Engine:
    """An engine over MODEL: a pulled or pullable name (pulled on first use), a GGUF file,
    a Hugging Face folder or a parrot run directory. The one place MODEL is resolved.
    `quantize` keeps weights int8/int4 in memory ("auto": int4 for a Q4_1 file where
    parrot's kernels run, else int8); `compile` compiles the decode step (slow to start,
    faster after)."""
    from parrot.adapt.prepare import prepare_for_inference
    from parrot.hub.resolve import resolve_model as hub_resolve
    from parrot.infer.encoder import require_decoder
    from parrot.kernels import settings_from

    model, tokenizer, info = hub_resolve(spec, device, pull_missing=True, log=_log)
    require_decoder(model.config, spec)  # an encoder (BERT) fills masks, it does not generate
    prepare_for_inference(model, quantize, info.quantization, **settings_from(os.environ))
    max_len = min(model.config.context_length, CLI_MAX_LEN)
    return Engine(model, tokenizer, max_batch=max_batch, max_len=max_len,
                  eos_ids=info.eos_ids or None, compile=compile)


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def add_sampling_flags(parser: argparse.ArgumentParser, max_new_tokens: int = 128) -> None:
    group = parser.add_argument_group("sampling")
    group.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    group.add_argument("--top-k", type=int, default=0, help="0 = off")
    group.add_argument("--top-p", type=float, default=1.0, help="nucleus mass; 1 = off")
    group.add_argument("--min-p", type=float, default=0.0, help="0 = off")
    group.add_argument("--repetition-penalty", type=float, default=1.0)
    group.add_argument("--frequency-penalty", type=float, default=0.0)
    group.add_argument("--presence-penalty", type=float, default=0.0)
    group.add_argument("--seed", type=int, default=None)
    group.add_argument("--max-new-tokens", type=int, default=max_new_tokens)
    group.add_argument("--stop", action="append", default=[], metavar="TEXT",
                       help="stop when this text appears (repeatable)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quantize", choices=("auto", "none", "int8", "int4"), default="auto",
                        help="weights kept int8/int4 in memory (auto, on a CPU: int4 for a Q4_1 "
                             "GGUF, int8 otherwise)")
    parser.add_argument("--compile", action="store_true",
                        help="compile the decode step (about a minute to start, faster after)")


def sampling_params(args: argparse.Namespace, extra_stop: tuple[str, ...] = ()) -> SamplingParams:
    """SamplingParams from the flags (validated: a bad value is a ParrotError)."""
    return SamplingParams(
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
        repetition_penalty=args.repetition_penalty, frequency_penalty=args.frequency_penalty,
        presence_penalty=args.presence_penalty, seed=args.seed,
        max_new_tokens=args.max_new_tokens, stop=tuple(args.stop) + tuple(extra_stop),
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("generate", help="complete a prompt with a model")
    parser.add_argument("model", metavar="MODEL",
                        help="a pulled model name, a GGUF file, a Hugging Face folder or a run "
                             "directory")
    parser.add_argument("--prompt", required=True, help="the text to continue")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object (text, tokens, finish reason, stats)")
    parser.add_argument("--truncate", action="store_true",
                        help="keep the end of a prompt longer than the context")
    add_sampling_flags(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    params = sampling_params(args)  # validate flags before loading the model
    engine = load_engine(args.model, args.device, quantize=args.quantize, compile=args.compile)
    if args.json:
        completion = engine.generate(args.prompt, params, truncate=args.truncate)
        print(json.dumps({
            "prompt": args.prompt, "text": completion.text,
            "prompt_ids": completion.prompt_ids, "token_ids": completion.token_ids,
            "finish_reason": completion.finish_reason, "stop_reason": completion.stop_reason,
            "stats": completion.stats.to_dict(),
        }, ensure_ascii=False))
        return 0
    stream = engine.stream(args.prompt, params, truncate=args.truncate)
    for delta in stream:
        sys.stdout.write(delta)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0
