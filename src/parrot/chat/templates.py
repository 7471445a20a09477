"""Chat templates: how a conversation becomes the text a model was trained to continue.

A template is a Jinja2 program in the Hugging Face `chat_template` convention: it sees
`messages` (dicts with `role` and `content`), `add_generation_prompt`, `bos_token`,
`eos_token` and `raise_exception`, and renders a string. A model that carries its own
template uses it; for the others four built-in layouts are provided (ChatML, Llama 3,
Gemma, and a plain "User:/Assistant:" transcript).
"""

from __future__ import annotations

import contextvars
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


# What one render may cost: items drawn from range() over the whole render, characters
# of output, and the size of a string, list or number built by `*` or `**`.
MAX_RANGE_ITEMS = 1_000_000
MAX_OUTPUT_CHARS = 8_000_000
MAX_PRODUCT = 1_000_000
_budget: contextvars.ContextVar[list[int]] = contextvars.ContextVar("template_budget")


def _sandbox_class() -> type:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Sandbox(ImmutableSandboxedEnvironment):
        """Jinja's immutable sandbox (no `_` attributes, no mutation of passed objects, no
        unsafe format strings), failing loudly on a forbidden attribute, plus limits on `*`
        and `**`, whose results Jinja's own sandbox does not bound ('a' * 10**10 would
        allocate 10 GB)."""

        intercepted_binops = frozenset({"*", "**"})

        def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
            # Jinja renders a forbidden attribute as an empty Undefined; refuse at once.
            from jinja2.exceptions import SecurityError

            raise SecurityError(f"access to attribute {attribute!r} of a "
                                f"{type(obj).__name__} is not allowed")

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            if operator == "**":
                if isinstance(right, (int, float)) and abs(right) > 64 and \
                        isinstance(left, (int, float)) and abs(left) > 1:
                    raise ParrotError("The chat template raises a number to a huge power.")
                return left ** right
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(times, int) and \
                        len(seq) * times > MAX_PRODUCT:
                    raise ParrotError("The chat template builds a string or list longer than "
                                      f"{MAX_PRODUCT:,} items.")
            return left * right

    return Sandbox


def _counted_range(*args: int) -> range:
    """range() that counts every item against the render's budget (nested loops too)."""
    items = range(*args)
    budget = _budget.get([0])
    budget[0] += len(items)
    if budget[0] > MAX_RANGE_ITEMS:
        raise ParrotError(f"The chat template loops over more than {MAX_RANGE_ITEMS:,} items.")
    return items


@lru_cache(maxsize=32)
def compile_template(source: str) -> Any:
    """A template's Jinja program, compiled in a sandbox with the same settings and helpers
    as Hugging Face (and the limits above)."""
    import jinja2

    env = _sandbox_class()(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    env.globals["range"] = _counted_range
    env.globals.pop("lipsum", None)  # paragraphs of filler on demand: no template needs it
    try:
        return env.from_string(source)
    except (jinja2.TemplateSyntaxError, RecursionError) as err:
        line = getattr(err, "lineno", "?")
        raise ParrotError(f"The chat template is not valid Jinja (line {line}: "
                          f"{getattr(err, 'message', 'nested too deeply')}); fix the "
                          "template.") from None


def render_template(program: Any, **context: Any) -> str:
    """Run a compiled template within the limits above; every failure (a sandbox refusal,
    an undefined name, a type error in the template) is a ParrotError naming it."""
    import jinja2

    token = _budget.set([0])
    out: list[str] = []
    size = 0
    try:
        for chunk in program.generate(**context):
            out.append(chunk)
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise ParrotError(f"The chat template writes more than {MAX_OUTPUT_CHARS:,} "
                                  "characters.")
    except ParrotError:
        raise
    except jinja2.exceptions.SecurityError as err:
        raise ParrotError(f"The chat template tried something the sandbox forbids ({err}); "
                          "use a template from a source you trust.") from None
    except (jinja2.TemplateError, ArithmeticError, LookupError, TypeError, ValueError,
            AttributeError, RecursionError, MemoryError) as err:
        raise ParrotError(f"The chat template failed to render ({type(err).__name__}: "
                          f"{str(err)[:200]}); fix the template or the messages.") from None
    finally:
        _budget.reset(token)
    return "".join(out)


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    # Jinja's own tojson escapes HTML characters; chat templates expect plain JSON.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _raise_exception(message: str) -> None:
    raise ParrotError(f"The chat template rejected the conversation: {message}")

