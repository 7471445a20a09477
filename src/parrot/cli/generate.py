"""`parrot generate MODEL --prompt TEXT`: one completion, streamed or as JSON.

Also home of what the chat, demo and serve commands share: the sampling and loading flags.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from parrot.errors import ParrotError
from parrot.infer import SamplingParams


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
    group.add_argument("--calibrated", action="store_true",
                       help="scale the temperature by the one `parrot eval calibration "
                            "--fit-temperature` saved with the model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quantize", choices=("auto", "none", "int8", "int4"), default="auto",
                        help="weights kept int8/int4 in memory (auto, on a CPU: int4 for a Q4_1 "
                             "GGUF, int8 otherwise)")
    parser.add_argument("--compile", action="store_true",
                        help="compile the decode step (about a minute to start, faster after)")


def load_llm(args: argparse.Namespace, max_batch: int = 1) -> Any:
    """`parrot.load` with the loading flags (MODEL, --device, --quantize, --compile, and
    --template where the command has it)."""
    from parrot.api import load
    from parrot.infer.encoder import require_decoder

    llm = load(args.model, device=args.device, quantize=args.quantize, max_batch=max_batch,
               compile=getattr(args, "compile", False), template=getattr(args, "template", None))
    require_decoder(llm.config, str(args.model))  # the CLI's seq2seq models: parrot seq2seq
    return llm


def add_image_flag(parser: argparse.ArgumentParser, where: str) -> None:
    parser.add_argument("--image", action="append", default=[], metavar="PATH",
                        help=f"a PNG or JPEG picture for a vision-language model, placed in "
                             f"front of {where} (repeatable; a data URL works too)")


def read_images(args: argparse.Namespace, llm: Any) -> list:
    """The --image pictures, read and checked now (a bad file fails before any prompt)."""
    from parrot.data.images import image_tensor
    from parrot.infer.vision import text_only_error

    if not args.image:
        return []
    vision = getattr(llm.model, "vision_config", None)
    if vision is None:
        raise text_only_error(str(args.model))
    return [image_tensor(source, vision.image_size) for source in args.image]


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
    parser.add_argument("--json-schema", metavar="FILE", type=Path, default=None,
                        help="constrain the output to JSON matching this schema file")
    add_image_flag(parser, "the prompt")
    add_sampling_flags(parser)
    parser.set_defaults(run=run)


def calibrated(llm: Any, params: SamplingParams, args: argparse.Namespace) -> SamplingParams:
    """params at temperature * the model's fitted temperature when --calibrated asks."""
    if not getattr(args, "calibrated", False):
        return params
    scale = llm.sampling(calibrated=True).temperature  # 1 * T, or the error saying how to fit T
    return params.replace(temperature=params.temperature * scale)


def read_schema(path: Path | None) -> Any:
    """The JSON schema in `path`, checked to compile (None: no constraint)."""
    if path is None:
        return None
    from parrot.infer.json_schema import compile_schema

    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ParrotError(f"cannot read the schema file {path}: {err.strerror}") from None
    except (ValueError, UnicodeDecodeError):
        raise ParrotError(f"the schema file {path} is not valid JSON") from None
    compile_schema(schema, where=str(path))
    return schema


def run(args: argparse.Namespace) -> int:
    from parrot.infer.vision import with_images

    params = sampling_params(args)  # validate flags before loading the model
    schema = read_schema(args.json_schema)
    llm = load_llm(args)
    params = calibrated(llm, params, args)
    prompt = with_images(args.prompt, read_images(args, llm))
    if args.json:
        completion = llm.engine.generate(prompt, params, truncate=args.truncate,
                                         json_schema=schema)
        print(json.dumps({
            "prompt": args.prompt, "text": completion.text,
            "prompt_ids": completion.prompt_ids, "token_ids": completion.token_ids,
            "finish_reason": completion.finish_reason, "stop_reason": completion.stop_reason,
            "stats": completion.stats.to_dict(),
        }, ensure_ascii=False))
        return 0
    for delta in llm.engine.stream(prompt, params, truncate=args.truncate,
                                   json_schema=schema):
        print(delta, end="", flush=True)
    print()
    return 0
