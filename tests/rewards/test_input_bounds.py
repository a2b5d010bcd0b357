"""Rewards read a bounded part of a completion before their expensive part, whatever its length.
The language reward's bound is tested in test_language.py."""

import pytest

from r1jax import rewards
from r1jax.rewards import math as math_reward

HUGE = "{" * 1_000_000  # a million unmatched braces: a second of brace matching if all were read


@pytest.fixture
def brace_scans(monkeypatch):
    """The lengths of the texts that math's brace matching (`last_boxed`) is given."""
    lengths = []

    def spy(text):
        lengths.append(len(text))
        return last_boxed(text)

    last_boxed = math_reward._last_boxed
    monkeypatch.setattr(math_reward, "_last_boxed", spy)
    return lengths


@pytest.mark.parametrize("reward, answer", [("accuracy", "7"), ("arithmetic", "7"),
                                            ("choice", "B")])
def test_answer_rewards_scan_a_bounded_end(brace_scans, reward, answer):
    completion = HUGE + f"<think>so</think> the answer is \\boxed{{{answer}}}"
    assert rewards.get(reward)([completion], [{"answer": answer}])[0] == 1.0
    assert brace_scans and max(brace_scans) <= math_reward.MAX_SEARCH_CHARS


def test_strict_judge_scans_a_bounded_end(brace_scans):
    completion = HUGE + "so the answer is \\boxed{\\frac{1}{2}}"
    assert rewards.judge("accuracy", completion, {"answer": "0.5"}) == (True, "\\frac{1}{2}")
    assert brace_scans and max(brace_scans) <= math_reward.MAX_SEARCH_CHARS
