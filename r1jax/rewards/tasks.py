"""Task rewards with exact checkers: countdown, arithmetic, multiple choice, and the rules the
toy world's general prompts are judged by (`toy_helpful`, `toy_harmless`; `r1jax.data.chat`).

Example fields: countdown reads "numbers" (list of ints) and "target" (int), as TinyZero's ground
truth does; arithmetic, choice and toy_helpful read "answer". A missing or malformed field gives
NaN.
"""

import math
import re
from fractions import Fraction

import numpy as np

from r1jax.data import chat
from r1jax.rewards.math import extract_answer
from r1jax.rewards.registry import register

_MAX_PAREN_DEPTH = 32
_MAX_EQUATION_CHARS = 1000


def _last_answer_block(text: str) -> str | None:
    close = text.rfind("</answer>")
    open_ = text.rfind("<answer>", 0, close) if close >= 0 else -1
    return None if open_ < 0 else text[open_ + len("<answer>") : close]


def _evaluate(expression: str) -> Fraction:
    """Value of an expression of non-negative integers, + - * / and parentheses (no unary minus),
    in exact rational arithmetic; ValueError or ZeroDivisionError if it is not one. A tiny
    recursive-descent parser instead of eval()."""
    if re.search(r"[^\d+\-*/()\s]", expression):
        raise ValueError("unexpected character")
    tokens = re.findall(r"\d+|\S", expression)
    pos = 0

    def peek():
        return tokens[pos] if pos < len(tokens) else None

    def take():
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def factor(depth):
        token = take() if peek() is not None else None
        if token is not None and token.isdigit():
            return Fraction(int(token))
        if token == "(" and depth < _MAX_PAREN_DEPTH:
            value = expr(depth + 1)
            if peek() == ")":
                take()
                return value
        raise ValueError("malformed expression")

    def term(depth):
        value = factor(depth)
        while peek() in ("*", "/"):
            value = value * factor(depth) if take() == "*" else value / factor(depth)
        return value

    def expr(depth):
        value = term(depth)
        while peek() in ("+", "-"):
            value = value + term(depth) if take() == "+" else value - term(depth)
        return value

    value = expr(0)
    if pos != len(tokens):
        raise ValueError("trailing tokens")
    return value


def _countdown_one(completion: str, example: dict) -> float:
    try:
        numbers = sorted(int(n) for n in example["numbers"])
        target = Fraction(example["target"])
    except (KeyError, TypeError, ValueError):
        return math.nan
    equation = _last_answer_block(completion)
    if equation is None:
        return 0.0
    if len(equation) > _MAX_EQUATION_CHARS:
        return 0.1
    if sorted(int(n) for n in re.findall(r"\d+", equation)) != numbers:
        return 0.1
    try:
        return 1.0 if _evaluate(equation) == target else 0.1
    except (ValueError, ZeroDivisionError):
        return 0.1


@register("countdown", fields=("numbers", "target"))
def countdown(completions, examples) -> np.ndarray:
    """TinyZero's countdown score: 1.0 for an equation in the last <answer> block that uses each of
    example["numbers"] exactly once and equals example["target"]; 0.1 for any other answer block;
    0.0 without one."""
    return np.array(
        [_countdown_one(c, e) for c, e in zip(completions, examples, strict=True)], dtype=np.float64
    )


_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+")


def _number(text) -> Fraction | None:
    """A plain number ("-1,234.5", "$12", "7."), exactly; None for anything else."""
    text = str(text).strip().strip("$").rstrip(".").strip()
    if len(text) > 100 or not _NUMBER.fullmatch(text):
        return None
    return Fraction(text.replace(",", ""))


def _arithmetic_one(completion: str, example: dict) -> float:
    gold = _number(example.get("answer", ""))
    if gold is None:
        return math.nan
    pred = extract_answer(completion)
    return float(pred is not None and _number(pred) == gold)


@register("arithmetic", fields=("answer",))
def arithmetic(completions, examples) -> np.ndarray:
    """1.0 where the extracted answer is a number equal to example["answer"], else 0.0."""
    return np.array(
        [_arithmetic_one(c, e) for c, e in zip(completions, examples, strict=True)],
        dtype=np.float64,
    )


_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\{([^{}]*)\}")
# "B", "(B)", "B.", or the letter followed by the option's text: "B) 42", "(B) 42", "B. 42".
_CHOICE = re.compile(r"\(?([A-Z])\)?[.:]?|(?:\(([A-Z])\)|([A-Z])[.):])\s.*", re.DOTALL)


def _letter(text) -> str | None:
    m = _CHOICE.fullmatch(_TEXT_WRAPPER.sub(r"\1", str(text)).strip())
    return None if m is None else next(g for g in m.groups() if g)


def _choice_one(completion: str, example: dict) -> float:
    gold = _letter(example.get("answer", ""))
    if gold is None:
        return math.nan
    pred = extract_answer(completion)
    return float(pred is not None and _letter(pred) == gold)


@register("choice", fields=("answer",))
def choice(completions, examples) -> np.ndarray:
    """Multiple choice (GPQA style): 1.0 where the extracted answer names the letter in
    example["answer"], else 0.0."""
    return np.array(
        [_choice_one(c, e) for c, e in zip(completions, examples, strict=True)], dtype=np.float64
    )


@register("toy_helpful", fields=("answer",))
def toy_helpful(completions, examples) -> np.ndarray:
    """1.0 where a response to a toy general prompt repeats the requested numbers in its summary
    and its answer (`chat.is_helpful`), else 0.0: what the helpfulness reward model should learn,
    logged beside it (weight 0) to show whether the policy improves or hacks the model."""
    return np.array([float(chat.is_helpful(c, str(e.get("answer", ""))))
                     for c, e in zip(completions, examples, strict=True)], dtype=np.float64)


@register("toy_harmless")
def toy_harmless(completions, examples) -> np.ndarray:
    """1.0 where a response leaks no secret (`chat.is_harmful`), else 0.0; as toy_helpful, the
    rule the harmlessness reward model should learn."""
    del examples  # harm is in the response alone
    return np.array([float(not chat.is_harmful(c)) for c in completions], dtype=np.float64)
