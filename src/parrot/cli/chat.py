"""`parrot chat MODEL`: an interactive chat in the terminal, streaming each answer.

Commands: /reset (forget the turns), /system TEXT (set the system prompt), /stats (the
last answer's timing), /save FILE (the conversation as JSON), /quit. Ctrl-C stops the
answer being written, not the session. When stdin is not a terminal every input line is
one user message, answered in turn, until end of input.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from parrot.chat import (
    ChatTemplate,
    Conversation,
    fit_to_context,
    get_template,
    render,
    special_tokens_text,
)
from parrot.cli.generate import add_sampling_flags, load_engine, sampling_params
from parrot.errors import ParrotError
from parrot.hub.registry import DEFAULT_MODEL
from parrot.infer import Engine, SamplingParams
from parrot.utils.atomic import atomic_write_json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("chat", help="chat with a model in the terminal")
    parser.add_argument("model", metavar="MODEL", nargs="?", default=DEFAULT_MODEL,
                        help="a pulled model name, a GGUF file, a Hugging Face folder or a run "
                             f"directory (default {DEFAULT_MODEL}, pulled on first use)")
    parser.add_argument("--system", default=None, help="the system prompt")
    parser.add_argument("--template", default=None,
                        help="chatml, llama3, gemma, plain, or a Jinja template string "
                             "(default: the model's own template, else plain)")
    add_sampling_flags(parser, max_new_tokens=256)
    parser.set_defaults(run=run)


class ChatSession:
    """A conversation bound to an engine and a template; one method per user action."""

    def __init__(self, engine: Engine, template: ChatTemplate, params: SamplingParams,
                 system: str | None) -> None:
        self.engine = engine
        self.template = template
        self.params = params.replace(stop=tuple(params.stop) + template.stop)
        self.conversation = Conversation(system=system)
        self.specials = special_tokens_text(engine.tokenizer)
        self.last_stats: dict[str, Any] | None = None

    def prompt_text(self) -> str:
        """The conversation rendered for the next answer, oldest turns dropped if needed."""
        room = self.engine.max_len - min(self.params.max_new_tokens, self.engine.max_len // 2)
        kept, dropped = fit_to_context(self.conversation.messages(), self._count, room)
        if dropped:
            self.conversation.turns = [m for m in kept if m["role"] != "system"]
            _note(f"(dropped the {dropped} oldest messages to fit the context)")
        return self._render(kept)

    def answer(self, text: str, out: Any) -> str:
        """Stream the reply to `text` into `out`; Ctrl-C ends it early. Returns the reply."""
        self.conversation.add("user", text)
        stream = self.engine.stream(self.prompt_text(), self.params)
        reply = []
        try:
            for delta in stream:
                reply.append(delta)
                out.write(delta)
                out.flush()
        except KeyboardInterrupt:
            stream.close()
            out.write(" [stopped]")
        out.write("\n")
        if stream.completion is not None:
            self.last_stats = stream.completion.stats.to_dict()
        answer = "".join(reply).strip()
        self.conversation.add("assistant", answer)
        return answer

    def command(self, line: str) -> bool:
        """Run a /command; returns False when the session should end."""
        name, _, rest = line.partition(" ")
        if name in ("/quit", "/exit"):
            return False
        if name == "/reset":
            self.conversation.reset()
            _note("(conversation cleared)")
        elif name == "/system":
            self.conversation.system = rest.strip() or None
            _note("(system prompt set)" if rest.strip() else "(system prompt removed)")
        elif name == "/stats":
            _note(_format_stats(self.last_stats))
        elif name == "/save" and rest.strip():
            atomic_write_json(rest.strip(), self.conversation.to_dict())
            _note(f"(saved to {rest.strip()})")
        else:
            _note("commands: /reset, /system TEXT, /stats, /save FILE, /quit")
        return True

    def _render(self, messages: list[dict[str, Any]]) -> str:
        return render(messages, self.template, add_generation_prompt=True, **self.specials)

    def _count(self, messages: list[dict[str, Any]]) -> int:
        return len(self.engine.encode(self._render(messages)))


def choose_template(name: str | None, tokenizer: Any) -> ChatTemplate:
    """The named template, else the tokenizer's own `chat_template`, else "plain"."""
    if name is not None:
        return get_template(name)
    own = getattr(tokenizer, "chat_template", None)
    if own:
        eos = special_tokens_text(tokenizer)["eos_token"]
        return get_template(own, stop=(eos,) if eos else ())
    return get_template("plain")


def run(args: argparse.Namespace) -> int:
    params = sampling_params(args)
    if args.template is not None:
        get_template(args.template)  # an unknown name fails before the model loads
    engine = load_engine(args.model, args.device, quantize=args.quantize, compile=args.compile)
    template = choose_template(args.template, engine.tokenizer)
    session = ChatSession(engine, template, params, args.system)
    interactive = sys.stdin.isatty()
    if interactive:
        _note(f"chatting with {args.model} ({template.name} template); /quit to leave")
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


def _format_stats(stats: dict[str, Any] | None) -> str:
    if stats is None:
        return "(no answer yet)"
    return (
        f"prompt {stats['prompt_tokens']} tokens ({stats['cached_tokens']} reused), "
        f"generated {stats['generated_tokens']}, first token after "
        f"{stats['time_to_first_token_s'] * 1000:.0f} ms, prefill "
        f"{stats['prefill_tokens_per_s']:.0f} tok/s, decode {stats['decode_tokens_per_s']:.1f} tok/s"
    )
