"""Conversations: messages, rendering to token ids with a loss mask, and fitting a context.

A message is a dict with a `role` ("system", "user", "assistant", or another role the
template knows) and a `content` string, the shape Jinja chat templates expect.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from parrot.chat.templates import ChatTemplate, compile_template, get_template
from parrot.errors import ParrotError

Message = dict[str, Any]


def check_messages(messages: Sequence[Message]) -> list[Message]:
    """The messages as plain dicts; ParrotError for a missing role or non-text content."""
    checked = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ParrotError(f"Message {i} needs a 'role' string, e.g. "
                              "{'role': 'user', 'content': 'Hello'}.")
        if message.get("tool_calls") and message.get("content") is None:
            message = {**message, "content": ""}  # an assistant turn that only calls tools
        if not isinstance(message.get("content"), str):
            raise ParrotError(f"Message {i} ({message['role']}) needs 'content' text.")
        checked.append(dict(message))
    return checked


def special_tokens_text(tokenizer: Any) -> dict[str, str]:
    """bos_token / eos_token strings for templates, from the tokenizer's ids when it has them."""
    out = {}
    for key, attr in (("bos_token", "bos_id"), ("eos_token", "eos_id")):
        token_id = getattr(tokenizer, attr, None)
        out[key] = "" if token_id is None else tokenizer.decode([token_id])
    return out


def render(
    messages: Sequence[Message],
    template: str | ChatTemplate = "chatml",
    add_generation_prompt: bool = True,
    bos_token: str = "",
    eos_token: str = "",
    tools: Sequence[dict] | None = None,
) -> str:
    """The conversation as text in the template's layout (optionally opening an assistant
    turn), exactly as `transformers`' apply_chat_template renders it. `tools` reach a
    template that uses them (chat.tool_format has the default for those that do not)."""
    program = compile_template(get_template(template).source)
    extra = {} if tools is None else {"tools": list(tools)}
    return program.render(messages=check_messages(messages),
                          add_generation_prompt=add_generation_prompt,
                          bos_token=bos_token, eos_token=eos_token, **extra)


def render_ids(
    messages: Sequence[Message],
    tokenizer: Any,
    template: str | ChatTemplate = "chatml",
    add_generation_prompt: bool = False,
) -> tuple[list[int], list[int]]:
    """Token ids of the rendered conversation and a mask that is 1 on assistant tokens only.

    An assistant turn's span is the text that rendering it adds after rendering the
    conversation before it with the generation prompt: the answer and its end-of-turn
    marker, which the model must learn to emit. Each span is encoded on its own so the mask
    falls exactly on token boundaries.
    """
    messages = check_messages(messages)
    specials = special_tokens_text(tokenizer)
    renders: list[tuple[str, int]] = []  # (rendered prefix, is its new text the assistant's)
    for i, message in enumerate(messages):
        if message["role"] == "assistant":
            renders += [(render(messages[:i], template, True, **specials), 0),
                        (render(messages[: i + 1], template, False, **specials), 1)]
    renders.append((render(messages, template, add_generation_prompt, **specials), 0))
    ids: list[int] = []
    mask: list[int] = []
    done = ""
    for text, is_assistant in renders:
        if not text.startswith(done):
            raise ParrotError("This chat template does not render turns incrementally, so "
                              "assistant tokens cannot be masked; use a built-in template.")
        piece = tokenizer.encode(text[len(done):], allowed_special="all") if text != done else []
        ids += piece
        mask += [is_assistant] * len(piece)
        done = text
    return ids, mask


def fit_to_context(
    messages: Sequence[Message],
    count_tokens: Callable[[list[Message]], int],
    limit: int,
) -> tuple[list[Message], int]:
    """Drop the oldest turns until the conversation fits in `limit` tokens.

    Leading system messages and the latest message are always kept. Returns the kept
    messages and how many were dropped (0: nothing happened), so the caller can say so.
    """
    messages = list(messages)
    n_system = next((i for i, m in enumerate(messages) if m["role"] != "system"), len(messages))
    system, turns = messages[:n_system], messages[n_system:]
    dropped = 0
    while count_tokens(system + turns) > limit:
        if len(turns) <= 1:
            raise ParrotError(
                f"The system prompt and the latest message alone take more than {limit} "
                "tokens, the room in the context; shorten them."
            )
        # Drop a whole exchange (a user turn and the replies after it) to keep turns aligned.
        cut = 1 + next((i for i, m in enumerate(turns[1:]) if m["role"] == "user"),
                       len(turns) - 2)
        turns = turns[cut:]
        dropped += cut
    return system + turns, dropped


@dataclass
class Conversation:
    """A chat's state: an optional system prompt and the turns so far."""

    system: str | None = None
    turns: list[Message] = field(default_factory=list)

    def messages(self) -> list[Message]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + list(self.turns)

    def add(self, role: str, content: str) -> None:
        self.turns.append({"role": role, "content": content})

    def reset(self) -> None:
        self.turns.clear()

    def to_dict(self) -> dict[str, Any]:
        return {"messages": self.messages()}


def template_for(tokenizer: Any, name: str | None = None) -> ChatTemplate:
    """The named template, else the tokenizer's own `chat_template` (stopping at its EOS
    token), else "plain"."""
    if name is not None:
        return get_template(name)
    own = getattr(tokenizer, "chat_template", None)
    if own:
        eos = special_tokens_text(tokenizer)["eos_token"]
        return get_template(own, stop=(eos,) if eos else ())
    return get_template("plain")
