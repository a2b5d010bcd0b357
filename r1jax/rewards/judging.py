"""Judging a completion for evaluation: correct or not, and the answer it gives (for cons@k).

A benchmark names the reward whose full marks (>= 1) mean correct: `accuracy` for maths (the
extracted final answer, math-equivalent to the gold one), a task reward (`countdown`,
`arithmetic`), or `choice` for multiple choice. Evaluation and RL therefore score answers with
the same verifier.
"""

import string

from r1jax.rewards.math import extract_answer, math_equal
from r1jax.rewards.registry import get

LETTERS = string.ascii_uppercase


def judge(reward: str, completion: str, problem: dict) -> tuple[bool, str | None]:
    """(correct, answer): whether reward ``reward`` gives the completion full marks, and its
    answer: for ``choice`` the option letter the reward accepts (None if no option's), else the
    extracted final answer."""
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
