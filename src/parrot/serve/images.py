"""Images in chat requests: OpenAI `image_url` content parts with base64 data URLs.

    {"role": "user", "content": [{"type": "text", "text": "How many circles?"},
                                 {"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}]}

Each image part becomes the model's `<image>` placeholder where it stood in the message.
Images are read and checked in the handler, so a bad one is a 400 naming `messages`:
not a data URL (the server never fetches URLs or opens paths a client names), not a
PNG or JPEG, truncated, too large by the image rule (`parrot.data.images`), more than
the model takes, or any image at all for a text-only model.
"""

from __future__ import annotations

from typing import Any

from parrot.data.images import image_tensor
from parrot.errors import ParrotError
from parrot.infer.vision import ImagePrompt, VisionSteps, split_images, text_only_error
from parrot.serve.errors import APIError
from parrot.serve.schemas import ChatMessage


def image_urls(messages: list[ChatMessage]) -> list[Any]:
    """The URL of every image part, in the order `ChatMessage.text()` writes their
    placeholders."""
    urls = []
    for message in messages:
        if isinstance(message.content, list):
            urls += split_images([{"role": message.role, "content": message.content}])[1]
    return urls


def image_prompt(engine: Any, ids: list[int], urls: list[Any]) -> tuple[list[int], int]:
    """(the ids, with the decoded pictures attached when there are any; the prompt's
    length once each image is expanded to its tokens). A 400 for any bad image."""
    if not urls:
        return ids, len(ids)
    if not isinstance(engine.steps, VisionSteps):
        raise APIError(400, text_only_error("The served model").message, param="messages")
    if any(not isinstance(u, str) or not u.startswith("data:") for u in urls):
        raise APIError(400, "Send images as base64 data URLs (data:image/png;base64,...); "
                            "this server does not fetch image URLs.", param="messages")
    try:
        size = engine.model.vision_config.image_size
        pixels = [image_tensor(url, size) for url in urls]
        expanded, _, _ = engine.steps.attach(list(ids), pixels)
    except ParrotError as err:
        raise APIError(400, err.message, param="messages") from None
    return ImagePrompt(ids, pixels), len(expanded)
