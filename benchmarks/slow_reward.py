"""A deliberately slow reward for benchmarks/grpo_step.py (its own module: the reward pool's
workers import reward functions by reference)."""

import time

import numpy as np

SECONDS_PER_COMPLETION = 0.01


def slow_length_reward(completions, examples):
    """1 for completions of at most 20 characters, after sleeping like a slow verifier."""
    del examples
    time.sleep(SECONDS_PER_COMPLETION * len(completions))
    return np.asarray([float(len(c) <= 20) for c in completions])
