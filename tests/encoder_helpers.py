"""Shared by the encoder tests: the pulled MiniLM folder (or a skip) and varied sentences."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from shared_paths import models_home

from parrot.errors import ParrotError


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 pulled once per machine with parrot's own `pull`, or a skip."""
    from parrot.hub.pull import pull

    try:
        return pull("minilm-l6", models_home())
    except ParrotError as err:
        pytest.skip(f"minilm-l6 unavailable: {err.message}")


_WORDS = ("the model reads every token and mixes them with attention while a small parrot "
          "repeats what it hears near the old river bank under a bright sky").split()
_FIXED = [
    "Hello, world!", "A cat sits on the mat.", "What's the weather like in Zürich today?",
    "Café déjà vu — naïve résumé of the façade.", "ÀÉÎÕÜ and àéîõü: accents everywhere.",
    "北京欢迎你 and 東京 are cities.", "안녕하세요, こんにちは, カタカナ and 漢字.",
    "I ❤️ emoji 🚀🔥 very much 😀!", "Numbers: 3.14159, 1,000,000 and 42% of $19.99.",
    "MiXeD CaSe TeXt WiTh WeIrD CAPITALS.", "don't can't won't shouldn't y'all",
    "tabs\tand\nnewlines\r\nand  double  spaces", "e-mail: someone@example.com, url: "
    "https://example.org/a?b=c&d=e", "Σίσυφος and ΟΔΥΣΣΕΥΣ in Greek.",
    "Привет, мир! Как дела?", "مرحبا بالعالم", "The ﬁne ligature and Ⅻ roman numeral.",
    "(parentheses) [brackets] {braces} <angles> \"quotes\" 'single'",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "a" * 150, "x", "?!?!...;;;::", "C++ and C# and F# are languages; so is Python3.11.",
    "2024-01-15T10:30:00Z was a Monday at 10:30 a.m.",
]


def varied_sentences(n: int = 200, seed: int = 0) -> list[str]:
    """`n` deterministic sentences: the fixed hard cases, then random mixes of words,
    punctuation, accents, CJK, digits and emoji, some long enough (> 256 pieces) to be
    truncated."""
    rng = random.Random(seed)
    extras = ["é", "ñ", "ü", "中文", "😀", "42", "3.5", ",", "!", "?", "—", "Ö", "ß", "🚀",
              "(x)", "U.S.A.", "naïve", "日本語", "#tag", "@user"]
    out = list(_FIXED)
    while len(out) < n:
        length = rng.choice([3, 8, 15, 30, 60, 200])
        words = [rng.choice(_WORDS) if rng.random() < 0.75 else rng.choice(extras)
                 for _ in range(length)]
        words = [w.capitalize() if rng.random() < 0.15 else w.upper() if rng.random() < 0.03
                 else w for w in words]
        out.append(" ".join(words) + rng.choice([".", "!", "?", "", "..."]))
    return out[:n]
