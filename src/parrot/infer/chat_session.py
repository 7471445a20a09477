"""A conversation bound to an engine and a chat template: what `parrot chat`, `parrot demo`
and `LLM.session()` talk through.

The session keeps the turns, renders them with the model's template for each answer
(dropping the oldest turns when the context would overflow) and streams the reply.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TextIO

from parrot.chat import ChatTemplate, Conversation, fit_to_context, render, special_tokens_text
from parrot.infer.engine import Engine
from parrot.infer.sampling import SamplingParams
from parrot.infer.vision import IMAGE_PLACEHOLDER, ImagePrompt
from parrot.utils.atomic import atomic_write_json

COMMANDS = "commands: /reset, /system TEXT, /stats, /save FILE, /quit"


class ChatSession:
    """One conversation; one method per user action. `note` receives the session's remarks
    (dropped turns, command results); by default they are discarded."""

    def __init__(self, engine: Engine, template: ChatTemplate, params: SamplingParams,
                 system: str | None = None, note: Callable[[str], None] | None = None,
                 images: Sequence[Any] = ()) -> None:
        self.engine = engine
        self.template = template
        self.params = params.replace(stop=tuple(params.stop) + template.stop)
        self.conversation = Conversation(system=system)
        self.specials = special_tokens_text(engine.tokenizer)
        self.last_stats: dict[str, Any] | None = None
        self.note = note or (lambda text: None)
        # Pictures go with the conversation's first user turn (`<image>` in front of it);
        # each answer resends them, and the engine's cache skips what it already holds.
        self.images = list(images)

    def prompt_text(self) -> str:
        """The conversation rendered for the next answer, oldest turns dropped if needed."""
        room = self.engine.max_len - min(self.params.max_new_tokens, self.engine.max_len // 2)
        kept, dropped = fit_to_context(self.conversation.messages(), self._count, room)
        if dropped:
            self.conversation.turns = [m for m in kept if m["role"] != "system"]
            self.note(f"(dropped the {dropped} oldest messages to fit the context)")
        return self._render(kept)

    def answer(self, text: str, out: TextIO | None = None) -> str:
        """The reply to `text`, streamed into `out` when given; Ctrl-C ends it early."""
        first = not any(m["role"] == "user" for m in self.conversation.turns)
        if first and self.images and IMAGE_PLACEHOLDER not in text:
            text = IMAGE_PLACEHOLDER * len(self.images) + text
        self.conversation.add("user", text)
        prompt = self.prompt_text()
        shown = prompt.count(IMAGE_PLACEHOLDER)  # 0 once the image turn no longer fits
        stream = self.engine.stream(ImagePrompt(prompt, self.images[:shown]) if shown
                                    else prompt, self.params)
        reply = []
        try:
            for delta in stream:
                reply.append(delta)
                if out is not None:
                    out.write(delta)
                    out.flush()
        except KeyboardInterrupt:
            stream.close()
            if out is not None:
                out.write(" [stopped]")
        if out is not None:
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
            self.note("(conversation cleared)")
        elif name == "/system":
            self.conversation.system = rest.strip() or None
            self.note("(system prompt set)" if rest.strip() else "(system prompt removed)")
        elif name == "/stats":
            self.note(format_stats(self.last_stats))
        elif name == "/save" and rest.strip():
            atomic_write_json(rest.strip(), self.conversation.to_dict())
            self.note(f"(saved to {rest.strip()})")
        else:
            self.note(COMMANDS)
        return True

    def _render(self, messages: list[dict[str, Any]]) -> str:
        return render(messages, self.template, add_generation_prompt=True, **self.specials)

    def _count(self, messages: list[dict[str, Any]]) -> int:
        return len(self.engine.encode(self._render(messages)))


def format_stats(stats: dict[str, Any] | None) -> str:
    """One line about the last answer's timing."""
    if stats is None:
        return "(no answer yet)"
    return (
        f"prompt {stats['prompt_tokens']} tokens ({stats['cached_tokens']} reused), "
        f"generated {stats['generated_tokens']}, first token after "
        f"{stats['time_to_first_token_s'] * 1000:.0f} ms, prefill "
        f"{stats['prefill_tokens_per_s']:.0f} tok/s, decode {stats['decode_tokens_per_s']:.1f} tok/s"
    )
