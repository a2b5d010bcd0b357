"""Lenient answer extraction for evaluation: the answer math-verify's extraction finds in a
completion, so that a benchmark is credited as lighteval-style evaluators credit it.

The RL reward's rule (`rewards.math.extract_answer`: a \\boxed{} or an <answer> block) misses
answers written as "The final answer is 34" or a bare expression, which base models often end
with; scored that way a base model looks worse than public evaluation says, and RL's gain looks
larger. Evaluation therefore extracts with math-verify's regexes and targets as lighteval sets
them for MATH: LaTeX with \\boxed{} first, then anchors ("final answer is ...", "answer: ..."),
then any LaTeX environment or plain number or expression; within a priority the rightmost match
first, and the first match that parses wins.

math-verify's `parse` returns the parsed object and the string of the first match it tried, not
of the match it kept; the judge needs the kept match's string (`math_equal` and the cons@k vote
compare strings), so `math_verify_answer` walks math-verify's own regexes and match extraction in
parse's order. That string is math-verify's normalised LaTeX ("1,250" reads 1250, "0.5" reads
\\frac{1}{2}, units are dropped); a percentage keeps its sign, which the string drops while the
object keeps it ("50%" is 0.5). When nothing parses, the first string matched (parse's
fallback). The whole completion is searched, reasoning included, as math-verify's metric does.

Time bound: one `DEADLINE_S` per completion with `rewards.math`'s timer (main thread only).
Some of math-verify's regexes are quadratic (a long run of digits and spaces without an
operator: 200k characters take minutes), and parsing a deeply nested match is exponential; past
the deadline the completion has no answer, as lighteval's parse timeout gives none. There is no
bound on length: such a run takes 2 s at 10k characters, so a bound that kept long completions'
answers would not bound the time; the deadline does.
"""

import functools
import itertools

from math_verify import ExprExtractionConfig, LatexExtractionConfig
from math_verify.parser import extract_match, get_extraction_regexes

from r1jax.rewards.math import _Deadline, _time_limit

# A 100k-character completion takes about 0.2 s; a typical one milliseconds.
DEADLINE_S = 2.0
# lighteval's MATH prediction targets: plain expressions, and LaTeX with \boxed matched first.
TARGETS = (ExprExtractionConfig(), LatexExtractionConfig(boxed_match_priority=0))


@functools.cache
def _priority_groups() -> list[list[tuple]]:
    """(compiled regex, target) pairs grouped by math-verify's priority, most preferred first.
    Compiled once here: math-verify caches one config's regexes at a time, and rewards.math
    parses with another."""
    patterns = sorted(((regex, priority, target)
                       for regexes, target in get_extraction_regexes(TARGETS)
                       for regex, priority in regexes), key=lambda p: p[1])
    return [[(regex, target) for regex, _, target in group]
            for _, group in itertools.groupby(patterns, key=lambda p: p[1])]


def _matches(text: str, group: list[tuple]) -> list[tuple]:
    """A priority group's matches in the order math-verify tries them: the one ending last first,
    and of those ending together the one starting first."""
    found = [(match, target) for regex, target in group for match in regex.finditer(text)]
    return sorted(found, key=lambda m: (m[0].end(), -m[0].start()), reverse=True)


def _is_percentage(match) -> bool:
    """Whether the match is one number followed by a percent sign or word ("50%", "$50$ %")."""
    groups = match.groupdict()
    several = any(value for name, value in groups.items() if name.startswith("next"))
    return not several and bool(groups.get("percent") or groups.get("first_percent"))


def _extract(text: str) -> str | None:
    fallback = None
    for group in _priority_groups():
        for match, target in _matches(text, group):
            parsed, answer = extract_match(match, target)
            if parsed is not None:
                return answer + "\\%" if _is_percentage(match) else answer
            fallback = fallback or answer or None
    return fallback


def math_verify_answer(completion: str) -> str | None:
    """The answer math-verify's extraction finds in ``completion`` (a LaTeX or plain string such
    as "\\frac{1}{2}" or "34"), or None: none found, or not within DEADLINE_S. Never raises."""
    try:
        with _time_limit(DEADLINE_S):
            answer = _extract(completion)
    except (_Deadline, Exception):  # math-verify catches its own errors; this is a backstop
        return None
    return (answer or "").strip() or None
