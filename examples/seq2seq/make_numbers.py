"""Write spelled-out English numbers → digits pairs as JSONL (a dataset made by this project).

    {"source": "three hundred and forty-two thousand and seven", "target": "342007"}

Each number is drawn by first choosing how many digits it has (uniformly, 1 to 6), so
short numbers are as common as long ones. There are only 1,000 numbers below 1,000, so
those repeat in the training file; larger numbers never repeat, and the test file holds
only numbers of 1,000 and more that the training file never contains. Usage:

    python examples/seq2seq/make_numbers.py --out examples/seq2seq/data \
        --train 20000 --test 500 --max 999999 --seed 0
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
        "fourteen fifteen sixteen seventeen eighteen nineteen").split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def below_hundred(n: int) -> str:
    if n < 20:
        return ONES[n]
    tens, ones = divmod(n, 10)
    return TENS[tens] + (f"-{ONES[ones]}" if ones else "")


def below_thousand(n: int) -> str:
    """1..999 in British style: "three hundred and forty-two"."""
    hundreds, rest = divmod(n, 100)
    if not hundreds:
        return below_hundred(rest)
    head = f"{ONES[hundreds]} hundred"
    return head + (f" and {below_hundred(rest)}" if rest else "")


def spell(n: int) -> str:
    """0..999,999 in words: 342007 → "three hundred and forty-two thousand and seven"."""
    if n == 0:
        return "zero"
    thousands, rest = divmod(n, 1000)
    if not thousands:
        return below_thousand(rest)
    words = f"{below_thousand(thousands)} thousand"
    if rest == 0:
        return words
    return words + (" and " if rest < 100 else " ") + below_thousand(rest)


def draw(rng: random.Random, largest: int) -> int:
    """A number in 0..largest whose digit count is uniform over 1..digits(largest)."""
    d = rng.randint(1, len(str(largest)))
    low = 0 if d == 1 else 10 ** (d - 1)
    return rng.randint(low, min(largest, 10 ** d - 1))


def draw_split(n_train: int, n_test: int, largest: int, seed: int
               ) -> tuple[list[int], list[int]]:
    """Training numbers (those below 1,000 may repeat) and distinct unseen test numbers."""
    if largest < 10_000:
        raise SystemExit("--max must be at least 10000 (test numbers are 1,000 or more)")
    rng = random.Random(seed)
    seen: set[int] = set()
    train: list[int] = []
    while len(train) < n_train:
        n = draw(rng, largest)
        if n < 1000 or n not in seen:
            seen.add(n)
            train.append(n)
    test: list[int] = []
    while len(test) < n_test:
        n = draw(rng, largest)
        if n >= 1000 and n not in seen:
            seen.add(n)
            test.append(n)
    return train, test


def write(path: Path, numbers: list[int]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for n in numbers:
            f.write(json.dumps({"source": spell(n), "target": str(n)}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="examples/seq2seq/data")
    parser.add_argument("--train", type=int, default=20000)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--max", type=int, default=999999)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    train, test = draw_split(args.train, args.test, args.max, args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write(out / "train.jsonl", train)
    write(out / "test.jsonl", test)
    print(f"{out}/train.jsonl: {args.train} pairs, {out}/test.jsonl: {args.test} pairs "
          f"(numbers 0..{args.max}, disjoint)")


if __name__ == "__main__":
    main()
