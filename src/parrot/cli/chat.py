"""`parrot chat MODEL`: an interactive chat in the terminal, streaming each answer.

Commands: /reset (forget the turns), /system TEXT (set the system prompt), /stats (the
last answer's timing), /save FILE (the conversation as JSON), /quit. Ctrl-C stops the
answer being written, not the session. When stdin is not a terminal every input line is
one user message, answered in turn, until end of input.
"""

from __future__ import annotations

import argparse
import sys

from parrot.cli.generate import (
    add_image_flag,
    add_sampling_flags,
    calibrated,
    load_llm,
    read_images,
    sampling_params,
)
from parrot.errors import ParrotError
from parrot.hub.registry import DEFAULT_MODEL
from parrot.infer.chat_session import ChatSession


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("chat", help="chat with a model in the terminal")
    parser.add_argument("model", metavar="MODEL", nargs="?", default=DEFAULT_MODEL,
                        help="a pulled model name, a GGUF file, a Hugging Face folder or a run "
                             f"directory (default {DEFAULT_MODEL}, pulled on first use)")
    parser.add_argument("--system", default=None, help="the system prompt")
    parser.add_argument("--template", default=None,
                        help="chatml, llama3, gemma, plain, or a Jinja template string "
                             "(default: the model's own template, else plain)")
    parser.add_argument("--rag", default=None, metavar="STORE",
                        help="ground every turn in this store (a `parrot rag index` SQLite "
                             "file or postgresql:// DSN); the sources follow each answer")
    parser.add_argument("--k", type=int, default=4, help="passages per turn with --rag")
    parser.add_argument("--mode", default="hybrid", help="retrieval mode with --rag")
    add_image_flag(parser, "the first message")
    add_sampling_flags(parser, max_new_tokens=256)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    params = sampling_params(args)
    llm = load_llm(args)
    params = calibrated(llm, params, args)
    if args.rag:
        from parrot.cli.rag_chat import run_rag_chat

        return run_rag_chat(args, llm, params, _lines(sys.stdin.isatty()), _note)
    session = ChatSession(llm.engine, llm.template, params, args.system, note=_note,
                          images=read_images(args, llm))
    interactive = sys.stdin.isatty()
    if interactive:
        _note(f"chatting with {args.model} ({llm.template.name} template); /quit to leave")
    for line in _lines(interactive):
        line = line.strip()
        if not line:
            continue
        if line.startswith("/"):
            if not session.command(line):
                break
            continue
        try:
            session.answer(line, sys.stdout)
        except ParrotError as err:  # e.g. a message too long for the context: keep going
            session.conversation.turns.pop()
            _note(f"parrot: error: {err.message}")
    return 0


def _lines(interactive: bool):
    """Input lines: prompted ones from a terminal (Ctrl-C there clears the line), else stdin."""
    if not interactive:
        yield from sys.stdin
        return
    while True:
        try:
            yield input("you> ")
        except KeyboardInterrupt:
            print()
        except EOFError:
            print()
            return


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
