"""The trivial rule reward of benchmarks/grpo_peer_workload.py (its own module: the reward pool's
workers import reward functions by reference)."""

import numpy as np


def has7_reward(completions, examples):
    """1 for a completion that holds the character "7"."""
    del examples
    return np.asarray([float("7" in c) for c in completions])
