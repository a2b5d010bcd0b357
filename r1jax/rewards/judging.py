"""Judging a completion for evaluation: correct or not, and the answer it gives (for cons@k).

A benchmark names the reward whose full marks (>= 1) mean correct: `accuracy` for maths (the
extracted final answer, math-equivalent to the gold one), a task reward (`countdown`,
`arithmetic`), or `choice` for multiple choice. Evaluation and RL therefore score answers with
the same verifier.

Maths answers are found one of two ways (`extraction`): "strict", the RL reward's own rule (a
\\boxed{} or an <answer> block; `judge`'s default), or "math_verify", math-verify's lenient
extraction as public evaluators run it ("The final answer is 34", a bare expression;
`math_verify_answer`), compared with the gold answer by the same `math_equal`; `r1jax.evaluate`
uses "math_verify" unless told otherwise. Strict extraction scores a base model that does not
box its answers well below what public evaluation reports, and so overstates what RL adds.
`choice` and the task rewards judge by their own rules either way.
"""

import string

from r1jax.rewards.extraction import math_verify_answer
from r1jax.rewards.math import extract_answer, math_equal
from r1jax.rewards.registry import get

LETTERS = string.ascii_uppercase
EXTRACTIONS = ("math_verify", "strict")


def judge(reward: str, completion: str, problem: dict,
          extraction: str = "strict") -> tuple[bool, str | None]:
    """(correct, answer): whether reward ``reward`` gives the completion full marks, and its
    answer: for ``choice`` the option letter the reward accepts (None if no option's), else the
    extracted final answer. For ``accuracy`` with ``extraction`` "math_verify": the answer
    math-verify finds (its normalised LaTeX: "0.5" reads \\frac{1}{2}), correct when
    math-equivalent to problem["answer"]."""
    if extraction not in EXTRACTIONS:
        raise ValueError(f"extraction must be one of {EXTRACTIONS}, got {extraction!r}")
    if reward == "accuracy" and extraction == "math_verify":
        answer = math_verify_answer(completion)
        return answer is not None and math_equal(answer, problem.get("answer")), answer
    score = get(reward)
    if reward == "choice":
        options = LETTERS[:len(problem["options"])]
        accepted = [letter for letter in options
                    if score([completion], [{"answer": letter}])[0] >= 1.0]
        answer = accepted[0] if accepted else None
        return answer == problem["answer"], answer
    return bool(score([completion], [problem])[0] >= 1.0), extract_answer(completion)


def math_equivalent(answer: str, representative: str) -> bool:
    """Whether two extracted answers vote together: equal strings, or math-equivalent with the
    group's first answer in the gold position (math_equal is not symmetric)."""
    return answer == representative or math_equal(answer, representative)


def same_string(answer: str, representative: str) -> bool:
    return answer == representative


def equivalence(reward: str):
    """How cons@k groups the answers judged by ``reward``: option letters by string, everything
    else by math equivalence."""
    return same_string if reward == "choice" else math_equivalent
