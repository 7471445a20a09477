"""Arithmetic word problems generated from templates with a seed, with worked solutions.

Each template draws its numbers so that every intermediate result is a whole number, and
records the solution as steps (what is computed, the expression, its value). From the steps
come the three forms the tools need: a chain-of-thought explanation, a Python program that
prints the answer (PAL), and calculator calls (ReAct).

Templates are split once into TRAIN and HELD_OUT, disjoint: a model tuned on traces of the
training templates is measured on problems whose wording and structure it never saw.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from fractions import Fraction

NAMES = ("Ana", "Ben", "Chloe", "Dev", "Emma", "Farid", "Grace", "Hugo", "Iris", "Jon")


@dataclasses.dataclass(frozen=True)
class Step:
    """One computation: `what` it finds, the arithmetic `expression`, and its `value`."""

    what: str
    expression: str
    value: Fraction


@dataclasses.dataclass(frozen=True)
class WordProblem:
    template: str
    question: str
    steps: tuple[Step, ...]

    @property
    def answer(self) -> Fraction:
        return self.steps[-1].value

    def reasoning(self) -> str:
        """The worked solution in words, ending with the rule's "The answer is N."."""
        lines = [f"{step.what.capitalize()}: {step.expression} = {_number(step.value)}."
                 for step in self.steps]
        return " ".join(lines) + f" The answer is {_number(self.answer)}."

    def program(self) -> str:
        """A Python program that computes the answer step by step and prints it."""
        lines = [f"{_variable(step.what)} = {_substitute(step.expression, self.steps[:i])}"
                 for i, step in enumerate(self.steps)]
        return "\n".join(lines + [f"print({_variable(self.steps[-1].what)})"])


def _number(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{float(value):g}"


def _variable(what: str) -> str:
    return "_".join(word for word in what.lower().replace("'", "").split() if word.isalnum())


def _substitute(expression: str, earlier: tuple[Step, ...]) -> str:
    """The expression with earlier results replaced by their variable names, so the program
    reads like the reasoning (`groups * 2`, not `4 * 2`)."""
    tokens = expression.split()
    names = {_number(step.value): _variable(step.what) for step in earlier}
    return " ".join(names.get(token, token) for token in tokens)


def _step(what: str, left: Fraction | int, op: str, right: Fraction | int) -> Step:
    a, b = Fraction(left), Fraction(right)
    value = {"+": a + b, "-": a - b, "*": a * b, "/": a / b}[op]
    return Step(what, f"{_number(a)} {op} {_number(b)}", value)


def pens(rng: random.Random) -> WordProblem:
    per, price, groups = rng.randint(2, 6), rng.randint(2, 9), rng.randint(2, 9)
    count = per * groups
    q = f"A shop sells pens at {per} for ${price}. How much do {count} pens cost in dollars?"
    first = _step("groups of pens", count, "/", per)
    return WordProblem("pens", q, (first, _step("total cost", first.value, "*", price)))


def apples(rng: random.Random) -> WordProblem:
    name, boxes, each = rng.choice(NAMES), rng.randint(2, 9), rng.randint(3, 12)
    eaten = rng.randint(1, boxes * each - 1)
    q = (f"{name} has {boxes} boxes with {each} apples in each box. {name} eats {eaten} "
         f"apples. How many apples are left?")
    first = _step("apples in all", boxes, "*", each)
    return WordProblem("apples", q, (first, _step("apples left", first.value, "-", eaten)))


def train_trip(rng: random.Random) -> WordProblem:
    speed, hours, back = rng.randint(40, 120), rng.randint(2, 6), rng.randint(10, 60)
    q = (f"A train travels at {speed} km per hour for {hours} hours, then {back} km more. "
         f"How many km does it travel in all?")
    first = _step("distance at speed", speed, "*", hours)
    return WordProblem("train_trip", q, (first, _step("total distance", first.value, "+", back)))


def savings(rng: random.Random) -> WordProblem:
    name, weekly, weeks = rng.choice(NAMES), rng.randint(3, 25), rng.randint(2, 12)
    goal = weekly * weeks
    q = f"{name} saves ${weekly} each week. How many weeks does it take to save ${goal}?"
    return WordProblem("savings", q, (_step("weeks needed", goal, "/", weekly),))


def change(rng: random.Random) -> WordProblem:
    name, count, price = rng.choice(NAMES), rng.randint(2, 8), rng.randint(2, 9)
    paid = (count * price // 10 + 1) * 10 + rng.choice((0, 10, 20))
    q = (f"{name} buys {count} notebooks at ${price} each and pays with ${paid}. "
         f"How much change in dollars does {name} get?")
    first = _step("cost of notebooks", count, "*", price)
    return WordProblem("change", q, (first, _step("change", paid, "-", first.value)))


def cookies(rng: random.Random) -> WordProblem:
    children, each, extra = rng.randint(2, 9), rng.randint(2, 8), rng.randint(1, 5)
    total = children * each + extra
    q = (f"There are {total} cookies. {extra} are broken and thrown away, and the rest are "
         f"shared equally among {children} children. How many cookies does each child get?")
    first = _step("cookies to share", total, "-", extra)
    return WordProblem("cookies", q, (first, _step("cookies each", first.value, "/", children)))


def ages(rng: random.Random) -> WordProblem:
    name, age = rng.choice(NAMES), rng.randint(5, 30)
    gap, later = rng.randint(2, 15), rng.randint(2, 10)
    q = (f"{name} is {age} years old. {name}'s brother is {gap} years older. How old will the "
         f"brother be in {later} years?")
    first = _step("brother's age now", age, "+", gap)
    return WordProblem("ages", q, (first, _step("brother's age then", first.value, "+", later)))


def garden(rng: random.Random) -> WordProblem:
    width, length, rows = rng.randint(2, 12), rng.randint(3, 15), rng.randint(2, 4)
    q = (f"A garden is {width} m wide and {length} m long. {rows} gardens like it are planted. "
         f"What is their total area in square metres?")
    first = _step("area of one garden", width, "*", length)
    return WordProblem("garden", q, (first, _step("total area", first.value, "*", rows)))


def discount(rng: random.Random) -> WordProblem:
    price, off = rng.randint(2, 30) * 10, rng.choice((10, 20, 25, 50))
    q = f"A jacket costs ${price}. It is on sale for {off}% off. What is the sale price in dollars?"
    first = _step("discount", price, "*", Fraction(off, 100))
    return WordProblem("discount", q, (first, _step("sale price", price, "-", first.value)))


def reading(rng: random.Random) -> WordProblem:
    name, daily, days = rng.choice(NAMES), rng.randint(5, 40), rng.randint(2, 9)
    total = daily * days + rng.randint(10, 200)
    q = (f"A book has {total} pages. {name} reads {daily} pages a day. How many pages are left "
         f"after {days} days?")
    first = _step("pages read", daily, "*", days)
    return WordProblem("reading", q, (first, _step("pages left", total, "-", first.value)))


def wages(rng: random.Random) -> WordProblem:
    name, hours, days, rate = (rng.choice(NAMES), rng.randint(2, 9), rng.randint(2, 6),
                               rng.randint(8, 30))
    q = (f"{name} works {hours} hours a day for {days} days and earns ${rate} per hour. "
         f"How many dollars does {name} earn?")
    first = _step("hours worked", hours, "*", days)
    return WordProblem("wages", q, (first, _step("earnings", first.value, "*", rate)))


def tank(rng: random.Random) -> WordProblem:
    rate, minutes = rng.randint(2, 20), rng.randint(2, 15)
    capacity = 2 * rate * minutes
    q = (f"A tank holds {capacity} litres. A pump fills it at {rate} litres per minute. How many "
         f"minutes does it take to fill half of the tank?")
    first = _step("half the tank", capacity, "/", 2)
    return WordProblem("tank", q, (first, _step("minutes needed", first.value, "/", rate)))


Template = Callable[[random.Random], WordProblem]
TRAIN: tuple[Template, ...] = (pens, apples, train_trip, savings, change, cookies, ages, garden)
HELD_OUT: tuple[Template, ...] = (discount, reading, wages, tank)


def generate(count: int, split: str = "held_out", seed: int = 0) -> list[WordProblem]:
    """`count` problems from the split's templates in turn, reproducible from `seed`."""
    templates = {"train": TRAIN, "held_out": HELD_OUT}[split]
    rng = random.Random(f"{split}:{seed}")
    return [templates[i % len(templates)](rng) for i in range(count)]
