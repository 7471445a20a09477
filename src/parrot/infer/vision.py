"""The engine's strategy for a vision-language model: pictures are part of the prompt.

A prompt with pictures is an `ImagePrompt`: its token ids (a list, so everything that
passes ids along passes it unchanged) and `.images`, one per `<image>` placeholder id.
At submission each placeholder is expanded to the model's tokens per image, and each
picture is read (`parrot.data.images`: PNG or JPEG, RGB, letterboxed to the model's size).

Caching: image tokens are prompt tokens. The slot remembers, for each position, the id
it holds, and for an image position a key drawn from the picture's pixels (a negative
number no text id can equal). A new prompt reuses the longest prefix whose ids and keys
match, so a follow-up question about the same picture skips both the encoder and the
prefill of everything before it, and a different picture never reuses another's.

splice: the features of the image positions still to compute replace their embeddings.
cross:  each slot keeps its picture's projected features and placeholder position; every
        decode step cross-attends to them (rows without a picture: weight 0, exactly).
With no picture in the prompt both compute exactly what the language model alone does.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any

import torch

from parrot.data.images import image_tensor
from parrot.errors import ParrotError
from parrot.infer.requests import Request
from parrot.infer.strategies import DecoderOnlySteps, common_prefix_length

IMAGE_PLACEHOLDER = "<image>"


class ImagePrompt(list):
    """A prompt (token ids, or a text the engine encodes) and the pictures for its
    `<image>` placeholders: paths, data URLs, bytes, PIL images or (3, H, W) tensors.
    Given ids it is the list of them; given a text, `.text` holds it."""

    def __init__(self, prompt: str | Sequence[int], images: Sequence[Any] = ()) -> None:
        text = isinstance(prompt, str)
        super().__init__(() if text else (int(t) for t in prompt))
        self.text = prompt if text else None
        self.images = list(images)


def with_images(prompt: str | Sequence[int], images: Sequence[Any] | None
                ) -> str | Sequence[int] | ImagePrompt:
    """`prompt` with `images` attached; a text without any `<image>` gets one placeholder
    per image in front (the layout `parrot generate --image` and training's raw one use)."""
    if not images:
        return prompt
    if isinstance(prompt, str) and IMAGE_PLACEHOLDER not in prompt:
        prompt = IMAGE_PLACEHOLDER * len(images) + prompt
    return ImagePrompt(prompt, images)


def split_images(messages: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Any]]:
    """OpenAI-style messages whose content may be a list of parts -> (messages with text
    content, each image part written as `<image>` where it stood, the images in order).

    Parts: {"type": "text", "text": ...} and {"type": "image_url", "image_url": {"url":
    ...}} (or "image_url": "..."); any other part is dropped, as text-only servers do.
    """
    out, images = [], []
    for message in messages:
        content = message.get("content")
        if not isinstance(content, list):
            out.append(dict(message))
            continue
        text = []
        for part in content:
            if part.get("type") == "text":
                text.append(str(part.get("text", "")))
            elif part.get("type") == "image_url":
                url = part.get("image_url")
                images.append(url.get("url") if isinstance(url, dict) else url)
                text.append(IMAGE_PLACEHOLDER)
        out.append({**message, "content": "".join(text)})
    return out, images


def text_only_error(name: str = "This model") -> ParrotError:
    return ParrotError(f"{name} is a text-only model; it cannot read images. Drop the image "
                       "or load a vision-language model (e.g. parrot train --preset vlm-tiny).")


def expand_placeholders(ids: Sequence[int], image_id: int, per_image: int) -> list[int]:
    """Each placeholder id repeated per_image times: [5, P, 7] with 2 -> [5, P, P, 7]."""
    out: list[int] = []
    for t in ids:
        out += [t] * per_image if t == image_id else [t]
    return out


def attach_images(steps: Any, ids: list[int], prompt: Any
                  ) -> tuple[list[int], list[int] | None, torch.Tensor | None]:
    """(ids, cache keys, pictures) of a prompt for the engine: a vision model's expansion
    (`VisionSteps.attach`), the ids unchanged otherwise; pictures for a text-only model
    raise the one sentence of `text_only_error`."""
    images = list(getattr(prompt, "images", ()))
    if isinstance(steps, VisionSteps):
        return steps.attach(ids, images)
    if images:
        raise text_only_error()
    return ids, None, None


def picture_key(pixels: torch.Tensor) -> int:
    """A 48-bit number drawn from a picture's pixels (equal pictures, equal keys)."""
    digest = hashlib.blake2b(pixels.contiguous().numpy().tobytes(), digest_size=6).digest()
    return int.from_bytes(digest, "little")


def as_pixels(source: Any, size: int) -> torch.Tensor:
    """(3, size, size) in [0, 1]: a ready tensor as given, anything else by the image rule."""
    if isinstance(source, torch.Tensor):
        if tuple(source.shape) != (3, size, size):
            raise ParrotError(f"An image tensor must be (3, {size}, {size}), got "
                              f"{tuple(source.shape)}.")
        return source.float()
    return image_tensor(source, size)


class VisionSteps(DecoderOnlySteps):
    """A `VisionLanguageModel`: the decoder-only strategy plus pictures in the prompt."""

    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        model = engine.model
        self.vision = model.vision_config
        self.cross = self.vision.connection == "cross"
        if self.cross:
            n, d = self.vision.n_patches, engine.config.d_model
            dtype = engine.cache.keys.dtype
            self.memory = torch.zeros(engine.max_batch, n, d, dtype=dtype, device=engine.device)
            self.starts = torch.full((engine.max_batch,), engine.max_len + 1,
                                     dtype=torch.long, device=engine.device)

    def attach(self, ids: list[int], images: Sequence[Any]) -> tuple[list[int], list[int],
                                                                       torch.Tensor | None]:
        """(ids with each placeholder expanded, their cache keys, pictures (n, 3, S, S))."""
        vc = self.vision
        slots = ids.count(vc.image_token_id)
        if len(images) > vc.max_images:
            raise ParrotError(f"The prompt carries {len(images)} images but this model reads "
                              f"at most {vc.max_images} per prompt; send fewer images.")
        if slots != len(images):
            raise ParrotError(f"The prompt has {slots} {IMAGE_PLACEHOLDER} placeholder(s) but "
                              f"{len(images)} image(s) came with it; give one image per "
                              "placeholder.")
        if not images:
            return ids, ids, None
        pixels = torch.stack([as_pixels(source, vc.image_size) for source in images])
        pictures = iter(picture_key(p) for p in pixels)
        per = vc.tokens_per_image
        out, keys = [], []
        for t in ids:
            if t != vc.image_token_id:
                out.append(t)
                keys.append(t)
                continue
            base = next(pictures) * per
            out += [t] * per
            keys += [-1 - (base + j) for j in range(per)]
        return out, keys, pixels

    def prefill(self, index: int, request: Request) -> torch.Tensor:
        """The prompt after the reused prefix, with the features of its new image tokens."""
        engine = self.engine
        slot, prompt = engine.slots[index], request.prompt
        keys = request.keys if request.keys is not None else prompt
        reuse = min(common_prefix_length(slot.ids, keys), len(prompt) - 1)
        del slot.ids[reuse:]
        tokens = torch.tensor([prompt[reuse:]], dtype=torch.long, device=engine.device)
        positions = torch.arange(reuse, len(prompt), device=engine.device)[None]
        view = engine.cache_view(index, index + 1, len(prompt))
        images, starts = self._images(index, request, reuse)
        hidden = engine.model.hidden(tokens, positions, view, images=images,
                                     image_starts=starts)
        slot.ids = list(keys)
        request.cached_tokens = reuse
        return engine.model.lm.logits(hidden[:, -1])

    def _images(self, index: int, request: Request, reuse: int
                ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """What `hidden` reads for the new part of the prompt (and, for cross, the slot's
        kept picture); runs the encoder only on pictures not already in the cache."""
        vc, prompt = self.vision, request.prompt
        per = vc.tokens_per_image  # each picture: `per` placeholder ids, in prompt order
        spans = [i for i, t in enumerate(prompt) if t == vc.image_token_id][::per]
        if self.cross:
            if not spans:
                self.starts[index] = self.engine.max_len + 1
                return None, None
            if spans[0] >= reuse:  # the picture is new to this slot
                self.memory[index] = self._encode(request, request.pixels[:1])[0]
            self.starts[index] = spans[0]
            return self.memory[index : index + 1], self.starts[index : index + 1]
        todo = [(k, start) for k, start in enumerate(spans) if start + per > reuse]
        if not todo:
            return None, None
        features = self._encode(request, request.pixels[[k for k, _ in todo]])
        rows = [f[max(0, reuse - start):] for f, (_, start) in zip(features, todo, strict=True)]
        return torch.cat(rows)[None], None

    def _encode(self, request: Request, pixels: torch.Tensor) -> torch.Tensor:
        """Encoder + projector on `pixels`, timed into the request's statistics."""
        start = time.perf_counter()
        features = self.engine.model.image_features(pixels.to(self.engine.device))
        request.image_encode_s += time.perf_counter() - start
        return features

    def forward_rows(self, tokens: torch.Tensor, positions: torch.Tensor,
                     rows: int, length: int) -> torch.Tensor:
        if not self.cross:
            return super().forward_rows(tokens, positions, rows, length)
        view = self.engine.cache_view(0, rows, length)
        return self.engine.model(tokens, positions=positions, cache=view,
                                 images=self.memory[:rows], image_starts=self.starts[:rows])
