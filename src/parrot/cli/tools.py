"""`parrot ask`, `parrot agent` and `parrot sandbox run`: prompting strategies, the ReAct
loop with tools, and the sandbox on its own."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from parrot.errors import ParrotError


def register(subparsers: argparse._SubParsersAction) -> None:
    from parrot.cli.generate import add_sampling_flags
    from parrot.tools.prompting import STRATEGIES

    ask = subparsers.add_parser("ask", help="answer a question with a prompting strategy "
                                            "(direct, chain of thought, PAL, ReAct)")
    ask.add_argument("model", metavar="MODEL")
    ask.add_argument("question")
    ask.add_argument("--strategy", choices=STRATEGIES, default="direct")
    ask.add_argument("--tools", default="calculator", help="tools for --strategy react")
    ask.add_argument("--max-steps", type=int, default=6)
    add_sampling_flags(ask, max_new_tokens=256)
    ask.set_defaults(run=run_ask, temperature=0.0)

    agent = subparsers.add_parser("agent", help="a ReAct agent with tools, steps shown live")
    agent.add_argument("model", metavar="MODEL")
    agent.add_argument("question")
    agent.add_argument("--tools", default="calculator,python",
                       help="comma-separated: calculator, python, rag:STORE")
    agent.add_argument("--max-steps", type=int, default=8)
    add_sampling_flags(agent, max_new_tokens=256)
    agent.set_defaults(run=run_agent, temperature=0.0)

    sandbox = subparsers.add_parser("sandbox", help="run a Python script in the sandbox")
    actions = sandbox.add_subparsers(dest="action", metavar="ACTION", required=True)
    run = actions.add_parser("run", help="run SCRIPT under bubblewrap with limits")
    run.add_argument("script", type=Path)
    run.add_argument("--timeout", type=float, default=10.0, help="wall-clock seconds")
    run.add_argument("--cpu", type=int, default=5, help="CPU seconds")
    run.add_argument("--memory-mb", type=int, default=1024)
    run.set_defaults(run=run_sandbox)


def tool_registry(spec: str):
    """The registry for a --tools list; rag:STORE becomes a retrieval tool over that store."""
    from parrot.tools.builtin import registry_for

    names = [name.strip() for name in spec.split(",") if name.strip()]
    if not names:
        raise ParrotError("--tools is empty; name at least one tool, e.g. --tools calculator")
    extra = {name: retrieval_tool(name.split(":", 1)[1]) for name in names
             if name.startswith("rag:")}
    return registry_for(names, extra)


def retrieval_tool(store: str):
    raise ParrotError(f"rag:{store} needs retrieval (parrot rag), which this build lacks")


def run_ask(args: argparse.Namespace) -> int:
    from parrot.cli.generate import load_llm, sampling_params
    from parrot.tools.prompting import ask_batch

    params = sampling_params(args)
    registry = tool_registry(args.tools) if args.strategy == "react" else None
    llm = load_llm(args)
    sampling = {"temperature": params.temperature, "max_new_tokens": params.max_new_tokens,
                "seed": params.seed}
    if registry is not None:
        return _react(llm, args.question, registry, args.max_steps, sampling)
    [attempt] = ask_batch(llm, [args.question], args.strategy, **sampling)
    for reply, note in zip(attempt.replies, attempt.notes + [""] * len(attempt.replies),
                           strict=False):
        print(reply.strip())
        if note:
            print(f"[{note}]")
    answer = "none found" if attempt.answer is None else _number(attempt.answer)
    print(f"\nanswer: {answer}")
    return 0


def run_agent(args: argparse.Namespace) -> int:
    from parrot.cli.generate import load_llm, sampling_params

    params = sampling_params(args)
    registry = tool_registry(args.tools)
    llm = load_llm(args)
    return _react(llm, args.question, registry, args.max_steps,
                  {"temperature": params.temperature, "max_new_tokens": params.max_new_tokens,
                   "seed": params.seed})


def _react(llm, question: str, registry, max_steps: int, sampling: dict) -> int:
    from parrot.tools.react import run_react

    def show(_: int, step) -> None:
        print(step.thought_and_action.strip())
        print(f"Observation: {step.observation}\n", flush=True)

    [trace] = run_react(llm, [question], registry, max_steps=max_steps, on_step=show,
                        **sampling)
    if trace.final is None:
        print(f"answer: none (the step budget of {max_steps} ran out)")
        return 1
    print(f"answer: {trace.final}")
    return 0


def run_sandbox(args: argparse.Namespace) -> int:
    from parrot.tools.sandbox import Limits, run_python

    try:
        code = args.script.read_text(encoding="utf-8")
    except OSError as err:
        raise ParrotError(f"cannot read {args.script}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise ParrotError(f"{args.script} is not UTF-8 text; give a Python script") from None
    limits = Limits(cpu_seconds=args.cpu, wall_seconds=args.timeout,
                    memory_bytes=args.memory_mb << 20)
    print(f"sandbox: bubblewrap, {limits.describe()}", file=sys.stderr)
    result = run_python(code, limits)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    if not result.ok:
        print(f"sandbox: {result.describe_failure()} ({result.seconds:.2f} s)", file=sys.stderr)
    return result.returncode if result.returncode > 0 else (0 if result.ok else 1)


def _number(value) -> str:
    from parrot.utils.arithmetic import format_number

    return format_number(value)
