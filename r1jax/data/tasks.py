"""The toy world's problems, generated from seeds: Countdown, multi-digit arithmetic and sums.

    examples = make_split("countdown", "train", n=10_000, seed=0)
    examples[0]   # {"id", "task", "level", "question", "answer", "numbers", "target"}
    make_split("sums", "test", n=500, seed=0, languages=("en", "kalo"))   # + "lang"

Countdown (TinyZero's task): reach `target` from 3-4 numbers with + - * /, each number used exactly
once, as the `countdown` reward requires; the gold answer is one such equation ("3 * 5 + 7"), and
any other that the reward accepts is right too. Arithmetic: a + b, a - b (a >= b) or a * b; the
gold answer is the number ("936"), scored by the `arithmetic` reward. Sums: "Add 3 + 7 + 2",
digits 1-9, gold answer the number ("12"), scored by the `arithmetic` reward too.

Levels 1-4 grow with the operands: arithmetic level d adds or subtracts two d-digit numbers or
multiplies a d-digit number by one digit (2-9); countdown levels are 3 numbers up to 9, 3 up to
30, 4 up to 30, 4 up to 99, always with a target from 1 to 100; sums level d adds d + 2 digits.
Sums are the world a ~1M-parameter model learns in minutes: each step of the long work
("10 + 2 = 12.") is one fact from a table of a few hundred, while the direct answer needs all of
them at once.

`languages=("en", "kalo")` poses each problem in English or in Kalo (`r1jax.data.languages`, a
word-for-word made-up language: "Pelu 3 + 7 + 2"), drawn uniformly, and names it in the example's
"lang" field, which the `language` reward reads; the problems themselves do not change.

Train and test share no problem: a problem's split is a hash of its canonical key (the operands
and operator, the sorted numbers and the target, or the terms in order), so it does not depend on
the seed. Problems may repeat within a split where a level has few of them (level-1 arithmetic has
about 200, level-1 sums 729).
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Sequence

from r1jax.data.languages import EN, check_languages, translate

TASKS = ("arithmetic", "countdown", "sums")
REWARDS = {"arithmetic": "arithmetic", "countdown": "countdown", "sums": "arithmetic"}  # scorers
SPLITS = ("train", "test")
LEVELS = (1, 2, 3, 4)
TEST_SHARE = 0.1  # of each level's problems

_COUNTDOWN_LEVELS = {1: (3, 9), 2: (3, 30), 3: (4, 30), 4: (4, 99)}  # count, largest number
_MAX_TARGET = 100
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}


@dataclasses.dataclass(frozen=True)
class Arithmetic:
    a: int
    op: str  # "+", "-" or "*"
    b: int
    level: int

    @property
    def key(self) -> str:
        return f"arithmetic:{self.a}{self.op}{self.b}"

    @property
    def result(self) -> int:
        return {"+": self.a + self.b, "-": self.a - self.b, "*": self.a * self.b}[self.op]

    @property
    def question(self) -> str:
        return f"Compute {self.a} {self.op} {self.b}"

    def example(self, id_: str) -> dict:
        return {
            "id": id_,
            "task": "arithmetic",
            "level": self.level,
            "question": self.question,
            "answer": str(self.result),
        }


@dataclasses.dataclass(frozen=True)
class Sums:
    terms: tuple[int, ...]  # digits 1-9, in the order the question lists them
    level: int

    @property
    def key(self) -> str:
        return "sums:" + "+".join(map(str, self.terms))

    @property
    def result(self) -> int:
        return sum(self.terms)

    @property
    def question(self) -> str:
        return "Add " + " + ".join(map(str, self.terms))

    def example(self, id_: str) -> dict:
        return {
            "id": id_,
            "task": "sums",
            "level": self.level,
            "question": self.question,
            "answer": str(self.result),
        }


@dataclasses.dataclass(frozen=True)
class Combination:
    """Numbers combined pairwise in order: `steps` holds (x, op, y, x op y); `tree` is a number
    or (op, left tree, right tree) and evaluates to `value`."""

    value: int
    tree: int | tuple
    steps: tuple[tuple[int, str, int, int], ...]

    @property
    def equation(self) -> str:
        """The tree as an expression with only the parentheses it needs: "(5 + 4) * 7"."""
        return _equation(self.tree)


@dataclasses.dataclass(frozen=True)
class Countdown:
    numbers: tuple[int, ...]  # in the order the question lists them
    target: int
    solution: Combination
    level: int

    @property
    def key(self) -> str:
        return f"countdown:{sorted(self.numbers)}={self.target}"

    @property
    def question(self) -> str:
        return (
            f"Using the numbers {list(self.numbers)}, create an equation that equals "
            f"{self.target}. Use +, -, * or / and each number exactly once"
        )

    def example(self, id_: str) -> dict:
        return {
            "id": id_,
            "task": "countdown",
            "level": self.level,
            "question": self.question,
            "answer": self.solution.equation,
            "numbers": list(self.numbers),
            "target": self.target,
        }


Problem = Arithmetic | Countdown | Sums


def split_of(problem: Problem) -> str:
    digest = hashlib.blake2b(problem.key.encode(), digest_size=8).digest()
    return "test" if int.from_bytes(digest, "big") < TEST_SHARE * 2**64 else "train"


def _equation(tree, parent: str | None = None, right: bool = False) -> str:
    if isinstance(tree, int):
        return str(tree)
    op, left, right_tree = tree
    text = f"{_equation(left, op)} {op} {_equation(right_tree, op, True)}"
    if parent is None:
        return text
    looser = _PRECEDENCE[op] < _PRECEDENCE[parent]
    same_level_right = right and _PRECEDENCE[op] == _PRECEDENCE[parent] and parent in "-/"
    return f"({text})" if looser or same_level_right else text


def combine(numbers: Sequence[int], rng: random.Random) -> Combination:
    """A random way to combine all `numbers` (each once) with + - * /, as a Countdown player
    would: take two, replace them by their sum, difference (larger first), product or exact
    quotient (larger first), repeat. Every intermediate value is a non-negative integer.

    Drawn with `rng.random()` only, which is several times faster than `choice` and `randint`:
    the test split keeps one problem in ten, so this is the generator's inner loop."""
    pool = [(n, n) for n in numbers]  # value, tree
    steps = []
    while len(pool) > 1:
        x, tx = pool.pop(int(rng.random() * len(pool)))
        y, ty = pool.pop(int(rng.random() * len(pool)))
        small, large = min(x, y), max(x, y)
        op = "+-*/"[int(rng.random() * (4 if small and large % small == 0 else 3))]
        if op in "-/" and x < y:
            x, tx, y, ty = y, ty, x, tx
        z = x + y if op == "+" else x - y if op == "-" else x * y if op == "*" else x // y
        steps.append((x, op, y, z))
        pool.append((z, (op, tx, ty)))
    value, tree = pool[0]
    return Combination(value, tree, tuple(steps))


def _digits(d: int, rng: random.Random) -> int:
    return rng.randrange(10 ** (d - 1), 10**d)


def _sample(task: str, level: int, rng: random.Random) -> Problem:
    if task == "sums":
        return Sums(tuple(1 + int(rng.random() * 9) for _ in range(level + 2)), level)
    if task == "arithmetic":
        op = rng.choice("+-*")
        a, b = _digits(level, rng), rng.randrange(2, 10) if op == "*" else _digits(level, rng)
        if op == "-" and a < b:
            a, b = b, a
        return Arithmetic(a, op, b, level)
    count, largest = _COUNTDOWN_LEVELS[level]
    while True:
        numbers = tuple(1 + int(rng.random() * largest) for _ in range(count))
        solution = combine(numbers, rng)
        if 1 <= solution.value <= _MAX_TARGET:
            return Countdown(numbers, solution.value, solution, level)


def sample_problem(task: str, split: str, level: int, rng: random.Random) -> Problem:
    """A random problem of `task` at `level` that belongs to `split`."""
    while split_of(problem := _sample(task, level, rng)) != split:
        pass
    return problem


def _check_args(task: str, split: str, levels: Sequence[int]) -> None:
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}; expected one of {TASKS}.")
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {SPLITS}.")
    if not levels or not set(levels) <= set(LEVELS):
        raise ValueError(f"Levels {tuple(levels)} must be a non-empty subset of {LEVELS}.")


def _in_language(example: dict, lang: str) -> dict:
    """`example` posed in `lang`: its question translated, and "lang" naming the language (which
    the `language` reward reads)."""
    return {**example, "question": translate(example["question"], lang), "lang": lang}


def split_problems(
    task: str, split: str, n: int, seed: int, levels: Sequence[int] = LEVELS
) -> list[Problem]:
    """The problems behind `make_split`'s examples of the same arguments, in its order: for what
    needs more of a problem than its example holds (the cold-start data writes its long work)."""
    _check_args(task, split, levels)
    rng = random.Random(f"{task}/{split}/{seed}")
    return [sample_problem(task, split, levels[i % len(levels)], rng) for i in range(n)]


def make_split(
    task: str, split: str, n: int, seed: int, levels: Sequence[int] = LEVELS,
    languages: Sequence[str] = (EN,),
) -> list[dict]:
    """`n` examples of `split`, the same for the same arguments; example i is at level
    levels[i % len(levels)]. Each is posed in one of `languages`, drawn uniformly, and then has a
    "lang" field; with the default, English alone, the examples are as they were before the toy
    world had languages (no "lang"). Languages are drawn from a generator of their own, so the
    problems, ids and splits are the same in every language setting."""
    check_languages(languages, "make_split")
    problems = split_problems(task, split, n, seed, levels)
    examples = [p.example(f"{task}/{split}/{seed}/{i}") for i, p in enumerate(problems)]
    if tuple(languages) == (EN,):
        return examples
    lang_rng = random.Random(f"{task}/{split}/{seed}/lang")
    return [_in_language(example, lang_rng.choice(languages)) for example in examples]
