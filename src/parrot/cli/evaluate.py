"""`parrot eval perplexity | calibration | report`: how good is a model, in numbers.

    parrot eval runs/shk --data text.txt                 (perplexity; `eval perplexity` too)
    parrot eval calibration MODEL --data TEXT_OR_TASK.jsonl --fit-temperature --out DIR
    parrot eval report MODEL [MODEL_B] --out report.html
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

EVAL_COMMANDS = ("perplexity", "calibration", "report")


def with_eval_command(argv: Sequence[str]) -> list[str]:
    """`parrot eval RUN ...` (the form before eval had subcommands) means `eval perplexity`."""
    argv = [str(a) for a in argv]
    if len(argv) > 1 and argv[0] == "eval" and argv[1] not in EVAL_COMMANDS and \
            not argv[1].startswith("-"):
        return ["eval", "perplexity", *argv[1:]]
    return argv


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="perplexity, calibration, a report card")
    commands = parser.add_subparsers(dest="eval_command", metavar="COMMAND", required=True)

    ppl = commands.add_parser("perplexity", help="perplexity and bits per byte on a text")
    ppl.add_argument("run_dir", metavar="MODEL")
    ppl.add_argument("--data", nargs="+", required=True, metavar="PATH")
    ppl.add_argument("--text-field", default="text")
    ppl.add_argument("--stride", type=int, default=None,
                     help="tokens between windows (default: half the context)")
    ppl.set_defaults(run=run_perplexity)

    cal = commands.add_parser("calibration", help="ECE, reliability diagram, temperature")
    cal.add_argument("model", metavar="MODEL")
    cal.add_argument("--data", nargs="+", default=None, metavar="TEXT_OR_TASK",
                     help="text files (next-token), or one JSONL multiple-choice task "
                          "{context, choices, answer}; default: the embedded corpus")
    cal.add_argument("--text-field", default="text")
    cal.add_argument("--fit-temperature", action="store_true",
                     help="fit T on the first half, measure the second, save T with the model")
    cal.add_argument("--bins", type=int, default=15)
    cal.add_argument("--max-tokens", type=int, default=2048,
                     help="next-token predictions per split (validation, test)")
    cal.add_argument("--seq-len", type=int, default=256)
    cal.add_argument("--out", default=None, help="write calibration.json and .png here")
    cal.set_defaults(run=run_calibration)

    report = commands.add_parser("report", help="one HTML page: perplexity, calibration, "
                                                "lm-evaluation-harness tasks")
    report.add_argument("models", nargs="+", metavar="MODEL", help="one model, or two to compare")
    report.add_argument("--text", nargs="+", default=None, metavar="PATH",
                        help="held-out text (default: the embedded corpus's validation part)")
    report.add_argument("--task", action="append", default=[], metavar="TASK.jsonl",
                        help="a local multiple-choice task (default: a generated one)")
    report.add_argument("--limit", type=int, default=200, help="task items per task")
    report.add_argument("--max-tokens", type=int, default=2048)
    report.add_argument("--out", required=True, help="the HTML file to write")
    report.set_defaults(run=run_report)


def run_perplexity(args: argparse.Namespace) -> int:
    from parrot.api import load_model
    from parrot.data.corpus import load_texts
    from parrot.eval.perplexity import evaluate_text

    model, tokenizer, _ = load_model(args.run_dir, pull=False)
    config = model.config
    text = "\n".join(load_texts(args.data, text_field=args.text_field))
    stride = args.stride or max(1, config.context_length // 2)
    result = evaluate_text(model, tokenizer, text, config.context_length, stride)
    print(f"tokens {result.tokens}  bytes {result.bytes}")
    print(f"nll {result.nll:.4f}  perplexity {result.perplexity:.3f}  "
          f"bits/byte {result.bits_per_byte:.4f}")
    return 0


def _line(name: str, s: dict) -> str:
    return (f"  {name:<7} T={s['temperature']:.3f}  ECE width {s['ece_width']:.4f}  "
            f"mass {s['ece_mass']:.4f}  NLL {s['nll']:.4f}  accuracy {s['accuracy']:.3f}")


def run_calibration(args: argparse.Namespace) -> int:
    from parrot.analysis import calibrate
    from parrot.errors import ParrotError

    if args.bins < 1:
        raise ParrotError(f"--bins must be at least 1, got {args.bins}.")
    result = calibrate(args.model, args.data, fit=args.fit_temperature, n_bins=args.bins,
                       max_tokens=args.max_tokens, seq_len=args.seq_len,
                       text_field=args.text_field)
    print(f"{result['kind']} predictions: {result['before']['predictions']} held out "
          f"(test), {result['validation_predictions']} for fitting")
    print(_line("before", result["before"]))
    if "after" in result:
        print(_line("after", result["after"]))
        print(f"saved T = {result['temperature']:.4f} to {result['saved']}")
    if args.out:
        from parrot.viz.calibration import figure_from_result
        from parrot.viz.figure import save_png

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "calibration.json").write_text(json.dumps(result, indent=1) + "\n")
        save_png(figure_from_result(result), out / "calibration.png")
        print(f"wrote {out / 'calibration.json'} and {out / 'calibration.png'}")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from parrot.analysis import report_card
    from parrot.errors import ParrotError

    if len(args.models) > 2:
        raise ParrotError(f"parrot eval report compares one or two models, got "
                          f"{len(args.models)}.")
    out = report_card(args.models, args.out, text=args.text, tasks=args.task,
                      limit=args.limit, max_tokens=args.max_tokens)
    print(f"wrote {out}")
    return 0
