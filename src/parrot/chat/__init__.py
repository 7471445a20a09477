"""Chat: messages, Jinja chat templates, token ids with an assistant-only loss mask, and
the policy for conversations that outgrow the context."""

from parrot.chat.conversation import (
    Conversation,
    Message,
    check_messages,
    fit_to_context,
    render,
    render_ids,
    special_tokens_text,
    template_for,
)
from parrot.chat.templates import BUILTIN_TEMPLATES, ChatTemplate, get_template

__all__ = [
    "BUILTIN_TEMPLATES", "ChatTemplate", "Conversation", "Message", "check_messages",
    "fit_to_context", "get_template", "render", "render_ids", "special_tokens_text",
    "template_for",
]
