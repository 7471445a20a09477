"""Chat templates: how a conversation becomes the text a model was trained to continue.

A template is a Jinja2 program in the Hugging Face `chat_template` convention: it sees
`messages` (dicts with `role` and `content`), `add_generation_prompt`, `bos_token`,
`eos_token` and `raise_exception`, and renders a string. A model that carries its own
template uses it; for the others four built-in layouts are provided (ChatML, Llama 3,
Gemma, and a plain "User:/Assistant:" transcript).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from parrot.errors import ParrotError

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

LLAMA3 = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)

# Gemma has no system role: the system prompt opens the first user turn.
GEMMA = (
    "{{ bos_token }}"
    "{% if messages and messages[0]['role'] == 'system' %}"
    "{% set prefix = messages[0]['content'] + '\n\n' %}{% set turns = messages[1:] %}"
    "{% else %}{% set prefix = '' %}{% set turns = messages %}{% endif %}"
    "{% for message in turns %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Gemma conversations must alternate user/assistant/user/...') }}"
    "{% endif %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + (prefix if loop.first else '')"
    " + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

# The transcript layout of a base model: a system paragraph, then labelled turns.
PLAIN = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ 'User: ' + message['content'] + '\n' }}"
    "{% else %}{{ 'Assistant: ' + message['content'] + '\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


@dataclass(frozen=True)
class ChatTemplate:
    """A named Jinja template and the strings that end an assistant turn in its layout."""

    name: str
    source: str
    stop: tuple[str, ...] = ()


BUILTIN_TEMPLATES = {
    "chatml": ChatTemplate("chatml", CHATML, ("<|im_end|>",)),
    "llama3": ChatTemplate("llama3", LLAMA3, ("<|eot_id|>",)),
    "gemma": ChatTemplate("gemma", GEMMA, ("<end_of_turn>",)),
    "plain": ChatTemplate("plain", PLAIN, ("\nUser:",)),
}


def get_template(name_or_source: str | ChatTemplate, stop: tuple[str, ...] = ()) -> ChatTemplate:
    """A built-in template by name, or a custom one from a Jinja source string."""
    if isinstance(name_or_source, ChatTemplate):
        return name_or_source
    if name_or_source in BUILTIN_TEMPLATES:
        return BUILTIN_TEMPLATES[name_or_source]
    if "{{" in name_or_source or "{%" in name_or_source:
        return ChatTemplate("custom", name_or_source, stop)
    raise ParrotError(
        f"Unknown chat template {name_or_source!r}; choose one of "
        f"{', '.join(sorted(BUILTIN_TEMPLATES))} or pass a Jinja template string."
    )


@lru_cache(maxsize=32)
def compile_template(source: str) -> Any:
    """A template's Jinja program, compiled in a sandbox with the same settings and helpers
    as Hugging Face."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as err:
        raise ParrotError(f"The chat template is not valid Jinja (line {err.lineno}: "
                          f"{err.message}); fix the template.") from None


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    # Jinja's own tojson escapes HTML characters; chat templates expect plain JSON.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _raise_exception(message: str) -> None:
    raise ParrotError(f"The chat template rejected the conversation: {message}")

