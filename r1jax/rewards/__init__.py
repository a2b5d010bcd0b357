"""Rewards: math accuracy, format, language consistency, task rewards, a code sandbox; the
registry, the weighted sum, the process pool that scores a batch with timeouts, and the judge
that evaluation uses (`judge`: correct or not, and the answer, by the same rewards) with its
lenient answer extraction (`math_verify_answer`).

Built-in rewards by name (each reads the example fields it registers with, which `check_fields`
requires of a run's data):
`accuracy` (example["answer"]), `format` (R1-Zero's), `summary_format` (R1's readable format:
a summary between </think> and <answer>), `language` (example["lang"]), `countdown`
(example["numbers"], example["target"]), `arithmetic` and `choice` (example["answer"]),
`code` (example["tests"]).
"""

from r1jax.rewards import tasks  # noqa: F401  (registers countdown, arithmetic, choice)
from r1jax.rewards.extraction import math_verify_answer
from r1jax.rewards.format import format_reward
from r1jax.rewards.judging import equivalence, judge, math_equivalent
from r1jax.rewards.language import language_consistency, register_language
from r1jax.rewards.math import accuracy, extract_answer, math_equal
from r1jax.rewards.pool import RewardScorer
from r1jax.rewards.registry import check_fields, get, register, weighted_sum
from r1jax.rewards.sandbox import run_code

__all__ = [
    "RewardScorer",
    "accuracy",
    "check_fields",
    "equivalence",
    "extract_answer",
    "format_reward",
    "get",
    "judge",
    "language_consistency",
    "math_equal",
    "math_equivalent",
    "math_verify_answer",
    "register",
    "register_language",
    "run_code",
    "weighted_sum",
]
