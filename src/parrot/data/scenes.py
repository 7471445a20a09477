"""Pictures the project draws (Pillow) and real ones it does not (scikit-learn's digits),
each with a caption and question-answer pairs, from a seed.

A scene is 1-4 shapes (circle, square, triangle) in four colours on black, or one digit
drawn from Pillow's bundled font (sizes, strokes, colours and offsets vary). Questions:

    count     "How many red circles are there?" / "How many objects are there?"   -> "2"
    colour    "What colour is the square?"       (only when one square is present) -> "red"
    shape     "What shape is the blue object?"   (only when one blue object is)   -> "circle"
    position  "Is the green triangle on the left or the right?"                    -> "left"
    digit     "Which digit is this?"                                               -> "7"

Splits: "train", "val" and "test" draw different scenes (different seeds); no train scene holds
a colour-shape pair of HELD_OUT, and the "combo" split holds only scenes with one, asked
about it. scikit-learn's 1,797 handwritten digits (8 x 8, shipped inside the package) are
split once, 1,347 train and 450 test (`train_test_split`, random_state=0, stratified).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch

COLOURS = {"red": (230, 40, 40), "green": (40, 190, 60), "blue": (60, 100, 240),
           "yellow": (235, 215, 40)}
SHAPES = ("circle", "square", "triangle")
HELD_OUT = frozenset({("red", "triangle"), ("blue", "circle")})
KINDS = ("count", "colour", "shape", "position", "digit")
SIZE = 32
DIGIT_QUESTION = "Which digit is this?"
CAPTION_QUESTION = "Describe the image."


@dataclass(frozen=True)
class Shape:
    shape: str
    colour: str
    x: int  # centre
    y: int
    size: int


@dataclass(frozen=True)
class QA:
    question: str
    answer: str
    kind: str


@dataclass(frozen=True)
class Example:
    """One picture, (3, SIZE, SIZE) floats in [0, 1], its caption and its questions."""

    pixels: torch.Tensor
    caption: str
    questions: tuple[QA, ...]


def draw_shapes(shapes: list[Shape]) -> torch.Tensor:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (SIZE, SIZE))
    draw = ImageDraw.Draw(image)
    for s in shapes:
        r, colour = s.size // 2, COLOURS[s.colour]
        box = (s.x - r, s.y - r, s.x + r, s.y + r)
        if s.shape == "circle":
            draw.ellipse(box, fill=colour)
        elif s.shape == "square":
            draw.rectangle(box, fill=colour)
        else:
            draw.polygon([(s.x, s.y - r), (s.x - r, s.y + r), (s.x + r, s.y + r)], fill=colour)
    return _tensor(image)


def _tensor(image: Any) -> torch.Tensor:
    pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return pixels.view(SIZE, SIZE, 3).permute(2, 0, 1).float() / 255.0


def place_shapes(rng: random.Random, pairs: list[tuple[str, str]]) -> list[Shape] | None:
    """Non-overlapping positions for (colour, shape) pairs; None when they do not fit."""
    placed: list[Shape] = []
    for colour, shape in pairs:
        for _ in range(50):
            size = rng.randint(8, 11)
            x, y = rng.randint(size // 2 + 1, SIZE - size // 2 - 2), \
                rng.randint(size // 2 + 1, SIZE - size // 2 - 2)
            if all(abs(x - p.x) > (size + p.size) // 2 + 1 or
                   abs(y - p.y) > (size + p.size) // 2 + 1 for p in placed):
                placed.append(Shape(shape, colour, x, y, size))
                break
        else:
            return None
    return placed


def caption(shapes: list[Shape]) -> str:
    """Left to right: "a red circle, a blue square"."""
    return ", ".join(f"a {s.colour} {s.shape}" for s in sorted(shapes, key=lambda s: s.x))


def questions(rng: random.Random, shapes: list[Shape], pairs: list[tuple[str, str]]
              ) -> list[QA]:
    """One question of each kind the scene can answer unambiguously."""
    out = []
    draw = rng.random()
    if draw < 0.3:
        out.append(QA("How many objects are there?", str(len(shapes)), "count"))
    elif draw < 0.6:
        shape = rng.choice(SHAPES)
        n = sum(s.shape == shape for s in shapes)
        out.append(QA(f"How many {shape}s are there?", str(n), "count"))
    else:
        colour, shape = rng.choice(pairs)
        n = sum(s.colour == colour and s.shape == shape for s in shapes)
        out.append(QA(f"How many {colour} {shape}s are there?", str(n), "count"))
    by_shape = [s for s in shapes if sum(t.shape == s.shape for t in shapes) == 1]
    if by_shape:
        s = rng.choice(by_shape)
        out.append(QA(f"What colour is the {s.shape}?", s.colour, "colour"))
    by_colour = [s for s in shapes if sum(t.colour == s.colour for t in shapes) == 1]
    if by_colour:
        s = rng.choice(by_colour)
        out.append(QA(f"What shape is the {s.colour} object?", s.shape, "shape"))
    unique = [s for s in shapes if abs(s.x - SIZE // 2) >= 4 and
              sum((t.colour, t.shape) == (s.colour, s.shape) for t in shapes) == 1]
    if unique:
        s = rng.choice(unique)
        side = "left" if s.x < SIZE // 2 else "right"
        out.append(QA(f"Is the {s.colour} {s.shape} on the left or the right?", side,
                      "position"))
    return out


def shape_scene(rng: random.Random, split: str) -> Example:
    """A scene of 1-4 shapes; "combo" scenes hold a HELD_OUT pair and ask about it."""
    while True:
        n = rng.randint(1, 4)
        pairs = [(rng.choice(list(COLOURS)), rng.choice(SHAPES)) for _ in range(n)]
        held = [p for p in pairs if p in HELD_OUT]
        if (split == "combo") != bool(held):
            continue
        shapes = place_shapes(rng, pairs)
        if shapes is None:
            continue
        qas = questions(rng, shapes, pairs)
        if split == "combo":  # only what is about a held-out object
            qas = [q for q in qas if any(f"{c} {s}" in q.question or
                                         (q.kind == "colour" and s in q.question) or
                                         (q.kind == "shape" and c in q.question)
                                         for c, s in held)]
            if not qas:
                continue
        return Example(draw_shapes(shapes), caption(shapes), tuple(qas))


def digit_scene(rng: random.Random) -> Example:
    """One digit from Pillow's bundled font, in a random size, stroke, colour and offset."""
    from PIL import Image, ImageDraw, ImageFont

    digit = rng.randrange(10)
    font = ImageFont.load_default(size=rng.randint(18, 28))
    image = Image.new("RGB", (SIZE, SIZE))
    draw = ImageDraw.Draw(image)
    colour = rng.choice([*COLOURS.values(), (240, 240, 240)])
    left, top, right, bottom = draw.textbbox((0, 0), str(digit), font=font)
    x = rng.randint(0, max(0, SIZE - (right - left))) - left
    y = rng.randint(0, max(0, SIZE - (bottom - top))) - top
    draw.text((x, y), str(digit), fill=colour, font=font, stroke_width=rng.choice((0, 1)),
              stroke_fill=colour)
    return Example(_tensor(image), f"the digit {digit}",
                   (QA(DIGIT_QUESTION, str(digit), "digit"),))


def scenes(split: str, n: int, seed: int = 0, digit_share: float = 0.2) -> list[Example]:
    """n examples of split "train", "val" (for validation losses), "test" or "combo" (no
    digits in "combo"); "val" and "test" follow the training distribution."""
    offsets = {"train": 0, "test": 1_000_003, "combo": 2_000_003, "val": 3_000_003}
    if split not in offsets:
        raise ValueError(f"split must be train, val, test or combo, got {split!r}")
    rng = random.Random(seed + offsets[split])
    return [digit_scene(rng) if split != "combo" and rng.random() < digit_share
            else shape_scene(rng, split) for _ in range(n)]


def sklearn_digits(split: str) -> tuple[torch.Tensor, list[int]]:
    """scikit-learn's digits: (n, 3, 32, 32) white-on-black pictures (each of the 8 x 8
    pixels a 4 x 4 block) and their labels; split "train" (1,347) or "test" (450)."""
    from sklearn.model_selection import train_test_split

    pixels, labels = digits_pixels()
    index = list(range(len(labels)))
    train, test = train_test_split(index, test_size=450, random_state=0, stratify=labels)
    chosen = train if split == "train" else test
    flat = torch.tensor(pixels[chosen], dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
    big = flat.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)
    return big.expand(-1, 3, -1, -1).contiguous(), [int(labels[i]) for i in chosen]


def digits_pixels() -> tuple[Any, Any]:
    """(1797, 64) pixel values 0..16 and labels, as scikit-learn ships them."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.data, digits.target


def digits_examples(split: str) -> list[Example]:
    pixels, labels = sklearn_digits(split)
    return [Example(p, f"the handwritten digit {d}", (QA(DIGIT_QUESTION, str(d), "digit"),))
            for p, d in zip(pixels, labels, strict=True)]
