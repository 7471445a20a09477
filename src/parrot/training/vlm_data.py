"""What a vision-language run trains on: pictures with their questions as token ids.

Each (picture, question, answer) becomes one example in one of two layouts, both with the
loss on the answer tokens only (and the end marker that closes the answer):

    chat  ChatML: <|im_start|>user\\n<image>{question}<|im_end|>\\n<|im_start|>assistant\\n
          {answer}<|im_end|>\\n                          (what `parrot chat` and serve send)
    raw   <image>{question} {answer}<|endoftext|>         (what `parrot generate` sends)

`<image>` is one placeholder id, expanded to the model's tokens per image (all of the
image's patches when splicing, one when cross-attending). A blind example is the same
text without the placeholder: what the language model alone learns, its priors. A
caption example puts the picture's caption, as text, where the picture goes: a language
model that has learned to answer from a description has the reading circuits a frozen
model needs before pictures can take the description's place (LLaVA relies on a
pretrained language model for this; ours learns it from the captions).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from parrot.chat import render_ids
from parrot.data.batches import SeededSampler
from parrot.data.scenes import CAPTION_QUESTION, Example
from parrot.errors import ParrotError
from parrot.tokenizer import Tokenizer
from parrot.training.objectives_sft import masked_next_token_loss

IMAGE = "<image>"
SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", IMAGE)
CHAT_TEMPLATE = "chatml"

Item = tuple[list[int], list[int], int]  # ids, loss mask, picture index (-1: none)


def train_tokenizer(examples: Sequence[Example], vocab_size: int) -> Tokenizer:
    """BPE over every caption, question and answer, with the chat and image specials."""
    texts = [CAPTION_QUESTION, *["user\n", "assistant\n"] * len(examples)]  # the chat roles
    for e in examples:
        texts.append(e.caption)
        texts += [f"{q.question} {q.answer}" for q in e.questions]
    return Tokenizer.train(texts, vocab_size, special_tokens=list(SPECIALS))


def encode_qa(tokenizer: Tokenizer, question: str, answer: str, layout: str,
              prefix: str, per_image: int) -> tuple[list[int], list[int]]:
    """(ids, loss mask) of one question in `layout` ("chat" or "raw") after `prefix`:
    the image placeholder (expanded to `per_image` ids), a caption, or nothing."""
    image_id = tokenizer.special_tokens[IMAGE]
    if layout == "chat":
        messages = [{"role": "user", "content": prefix + question},
                    {"role": "assistant", "content": answer}]
        ids, mask = render_ids(messages, tokenizer, CHAT_TEMPLATE)
    else:
        prompt = tokenizer.encode(prefix + question, allowed_special="all")
        tail = tokenizer.encode(" " + answer) + [tokenizer.eos_id]
        ids, mask = prompt + tail, [0] * len(prompt) + [1] * len(tail)
    full, full_mask = [], []
    for t, m in zip(ids, mask, strict=True):
        n = per_image if t == image_id else 1
        full += [t] * n
        full_mask += [m] * n
    return full, full_mask


def encode_examples(examples: Sequence[Example], tokenizer: Tokenizer, per_image: int,
                    *, captions: bool, context: str = "image", raw_share: float = 0.3,
                    seed: int = 0) -> list[Item]:
    """Every question (or, with `captions`, every caption) of the examples as items; a
    seeded `raw_share` of them in the raw layout, the rest as chat. context: what comes
    before the question, "image" (the picture), "none" (blind) or "caption" (the
    picture's caption as text, which the language model learns to read answers from)."""
    rng = random.Random(seed)
    items = []
    for index, example in enumerate(examples):
        pairs = [(CAPTION_QUESTION, example.caption)] if captions else \
            [(q.question, q.answer) for q in example.questions]
        prefix = {"image": IMAGE, "none": "", "caption": example.caption + ". "}[context]
        for question, answer in pairs:
            layout = "raw" if rng.random() < raw_share else "chat"
            ids, mask = encode_qa(tokenizer, question, answer, layout, prefix, per_image)
            items.append((ids, mask, index if context == "image" else -1))
    return items


@dataclass(frozen=True)
class VisionBatch:
    """tokens (B, T+1) right-padded; mask (B, T) on the targets tokens[:, 1:]; pixels
    (B, 3, H, W), one picture per row (None for a blind batch)."""

    tokens: torch.Tensor
    mask: torch.Tensor
    pixels: torch.Tensor | None

    def to(self, device: Any, non_blocking: bool = False) -> VisionBatch:
        move = lambda t: None if t is None else t.to(device, non_blocking=non_blocking)  # noqa: E731
        return VisionBatch(move(self.tokens), move(self.mask), move(self.pixels))


def collate(items: Sequence[Item], pixels: torch.Tensor | None) -> VisionBatch:
    width = max(len(ids) for ids, _, _ in items)
    tokens = torch.zeros(len(items), width, dtype=torch.long)
    mask = torch.zeros(len(items), width)
    for row, (ids, m, _) in enumerate(items):
        tokens[row, : len(ids)] = torch.tensor(ids)
        mask[row, : len(m)] = torch.tensor(m, dtype=torch.float32)
    picks = [i for _, _, i in items]
    images = None if pixels is None or picks[0] < 0 else pixels[torch.tensor(picks)]
    return VisionBatch(tokens, mask[:, 1:], images)


class VisionSampler(SeededSampler):
    """Random batches of items from a seeded generator (resumable like every sampler)."""

    def __init__(self, items: list[Item], pixels: torch.Tensor | None, batch_size: int,
                 seed: int) -> None:
        if not items:
            raise ParrotError("A vision-language stage has no training examples.")
        super().__init__(batch_size, seed)
        self.items, self.pixels = items, pixels
        self.seq_len = max(len(ids) for ids, _, _ in items) - 1

    def next(self) -> VisionBatch:
        picks = torch.randint(0, len(self.items), (self.batch_size,), generator=self.generator)
        return collate([self.items[i] for i in picks.tolist()], self.pixels)


def fixed_vision_batches(items: list[Item], pixels: torch.Tensor | None,
                         batch_size: int) -> list[VisionBatch]:
    return [collate(items[i : i + batch_size], pixels) for i in range(0, len(items), batch_size)]


def image_starts(tokens: torch.Tensor, image_id: int) -> torch.Tensor:
    """(B,) the first placeholder's position in each row (rows must hold one)."""
    return (tokens == image_id).int().argmax(dim=1)


def vision_answer_loss(model: nn.Module, batch: VisionBatch) -> tuple[torch.Tensor, dict]:
    """Masked next-token loss on the answer tokens; the pictures go through the encoder
    and projector (a blind batch runs the language model alone).

    Metrics: token_accuracy (answer tokens predicted exactly by argmax)."""
    inputs, targets = batch.tokens[:, :-1], batch.tokens[:, 1:]
    if batch.pixels is None:
        logits = model(inputs)
    else:
        features = model.image_features(batch.pixels)                    # (B, N, d)
        starts = image_starts(inputs, model.vision_config.image_token_id)
        logits = model(inputs, images=features, image_starts=starts)
    loss = masked_next_token_loss(logits, targets, batch.mask)
    mask = batch.mask.bool()
    correct = ((logits.argmax(-1) == targets) & mask).sum()
    return loss, {"token_accuracy": (correct / mask.sum().clamp(min=1)).detach()}
