"""Math answers: extract the final answer from a completion, compare it with the gold answer.

Equivalence is math-verify's, not a hand-written LaTeX normaliser: both strings are parsed with
`math_verify.parse` and compared with `verify(gold, pred)` in that order (verify is not symmetric;
open-r1 had the arguments swapped, #557).

Time bound: math-verify's own timeouts use `signal.alarm`, whole seconds, and they cancel any other
alarm. We switch them off and bound each parse and each verify with our own interval timer
instead (`DEADLINE_S`). Like every signal it only works in the main thread, which is where the
reward pool's workers run it; the pool's per-call timeout kills a worker stuck in C code the timer
cannot interrupt. Two guards keep the common pathological answers cheap: answers longer than
`MAX_ANSWER_CHARS` never reach the parser (its ANTLR grammar is superlinear in length and
exponential in bracket depth), and integer power towers such as 9^{9^{9^9}}, which sympy would
try to evaluate exactly, are compared as strings only. `extract_answer` reads only the last
`MAX_SEARCH_CHARS` characters of a completion: its brace matching is a Python loop (about a second
per million braces), and a final answer is at the end.

Speed: parsing costs milliseconds (tens for an interval), so two integers are compared directly
(math-verify's verdict, tested against it), and parses and verdicts are cached per process: the
completions of one GRPO group often repeat an answer.
"""

import contextlib
import functools
import logging
import math
import re
import signal
import threading

import numpy as np
import sympy
from math_verify import parse, verify

from r1jax.answers import last_boxed as _last_boxed
from r1jax.rewards.registry import register

DEADLINE_S = 1.0  # per parse and per verify
MAX_ANSWER_CHARS = 500  # the longest MATH answers are about 150 characters
MAX_SEARCH_CHARS = 100_000  # of a completion's end; about 25k tokens of reasoning
_REARM_S = 0.01  # after a deadline fires, it fires again this often until it is caught
_MAX_DIGITS = 10_000  # powers whose exact value has more digits are not evaluated

# We pass timeouts of None on purpose; math-verify warns about it once per process.
logging.getLogger("math_verify").setLevel(logging.ERROR)


class _Deadline(BaseException):
    """Raised from the timer signal. A BaseException, so math-verify's `except Exception` blocks
    let it through and the whole comparison stops."""


@contextlib.contextmanager
def _time_limit(seconds: float):
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _expire(signum, frame):
        # The handler runs wherever the main thread is, possibly inside a gc callback or a
        # __del__, where Python prints the exception and drops it. Re-arming keeps raising
        # until one lands in the guarded code.
        signal.setitimer(signal.ITIMER_REAL, _REARM_S)
        raise _Deadline

    previous = signal.signal(signal.SIGALRM, _expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        while True:  # a re-armed alarm may still land while we disarm; retry until it is off
            try:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
                break
            except _Deadline:
                continue


def extract_answer(text: str) -> str | None:
    """The final answer of a completion: the content of the last <answer>...</answer> block (or
    the last \\boxed{...} inside it), else the last \\boxed{...} anywhere; None if there is none.
    An <answer> block wins over an earlier \\boxed in the reasoning. Only the last
    MAX_SEARCH_CHARS characters are read."""
    text = text[-MAX_SEARCH_CHARS:]
    close = text.rfind("</answer>")
    if close >= 0:
        open_ = text.rfind("<answer>", 0, close)
        if open_ >= 0:
            block = text[open_ + len("<answer>") : close]
            answer = _last_boxed(block)
            answer = (block if answer is None else answer).strip()
            return answer or None
    answer = _last_boxed(text)
    return answer.strip() if answer is not None and answer.strip() else None


@functools.lru_cache(maxsize=4096)
def _parse(answer: str) -> tuple:
    """math-verify's parse of a bare answer string: sympy objects first, then the string itself."""
    with _time_limit(DEADLINE_S):
        return tuple(parse("\\boxed{" + answer + "}", parsing_timeout=None))


def _log10_size(node) -> float | None:
    """An upper bound on the digits sympy needs to hold `node` exactly (|log10 |node||) when it is
    built from numbers with powers, products and sums; None when it has anything else."""
    if node.is_Number:
        try:
            value = abs(float(node))
        except (OverflowError, TypeError):  # a huge Rational; nan and zoo are Numbers too
            return math.inf
        return abs(math.log10(value)) if 0 < value < math.inf else (0.0 if value == 0 else math.inf)
    if node.is_Pow:
        base, exp = _log10_size(node.base), _log10_size(node.exp)
        if base is None or exp is None:
            return None
        return base * 10**exp if exp < 300 else math.inf
    if node.is_Mul or node.is_Add:
        sizes = [_log10_size(arg) for arg in node.args]
        return None if None in sizes else sum(sizes)
    return None


def _too_large(expr) -> bool:
    if not isinstance(expr, sympy.Basic):
        return False
    return any(
        n.is_Pow and (_log10_size(n) or 0) > _MAX_DIGITS for n in sympy.preorder_traversal(expr)
    )


def _parse_gold(gold: str) -> tuple:
    """The parsed gold answer; empty when no math object comes out of it (math-verify then only
    has the raw string to compare) or parsing takes longer than DEADLINE_S."""
    try:
        parsed = _parse(gold) if gold else ()
    except (_Deadline, Exception):
        return ()
    return parsed if any(not isinstance(p, str) for p in parsed) else ()


# An integer with optional thousands separators: "1,000", "-7", "033".
_INTEGER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)")


def _integer(text: str) -> int | None:
    text = text.strip()
    return int(text.replace(",", "")) if len(text) <= 100 and _INTEGER.fullmatch(text) else None


@functools.lru_cache(maxsize=4096)  # a group's completions often share an answer
def _equal(pred: str, gold: str) -> bool:
    # Two integers ("1,000" vs "1000", "033" vs "33") are compared directly: math-verify gives the
    # same verdict after milliseconds of parsing, and integers are most answers (GSM8K, AIME).
    pred_int, gold_int = _integer(pred), _integer(gold)
    if pred_int is not None and gold_int is not None:
        return pred_int == gold_int
    gold_parsed = _parse_gold(gold)
    if not gold_parsed or len(pred) > MAX_ANSWER_CHARS:
        return False
    try:
        pred_parsed = _parse(pred)
        with _time_limit(DEADLINE_S):
            pred_parsed = [p for p in pred_parsed if not _too_large(p)]
            return bool(verify(list(gold_parsed), pred_parsed, timeout_seconds=None))
    except (_Deadline, Exception):  # math-verify catches its own errors; this is a backstop
        return False


def _gold_text(gold) -> str:
    return "" if gold is None else str(gold).strip()


def math_equal(pred: str, gold: str) -> bool:
    """Whether answer `pred` is equivalent to answer `gold` (both bare answers such as "\\frac12",
    "1,000", "[0, 1)"). False when either does not parse; bounded by about 3 x DEADLINE_S in the
    main thread."""
    return _equal(pred, _gold_text(gold))


def _accuracy_one(completion: str, gold) -> float:
    gold = _gold_text(gold)
    if _integer(gold) is None and not _parse_gold(gold):
        return math.nan
    pred = extract_answer(completion)
    return float(pred is not None and _equal(pred, gold))


def accuracy(completions, golds) -> np.ndarray:
    """1.0 where the completion's extracted answer equals the gold answer, else 0.0; NaN where
    the gold answer does not parse (the item is skipped, not scored 1 as in open-r1 #293)."""
    return np.array(
        [_accuracy_one(c, g) for c, g in zip(completions, golds, strict=True)], dtype=np.float64
    )


@register("accuracy", fields=("answer",))
def accuracy_term(completions, examples) -> np.ndarray:
    """`accuracy` against example["answer"]."""
    return accuracy(completions, [e.get("answer") for e in examples])
