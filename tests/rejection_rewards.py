"""A verifier for the rejection job's test that a random model passes half the time: completions
of even length are correct. It lives in a module of its own (not a test file) because the reward
pool's workers import reward functions by reference."""

import numpy as np


def even_length(completions, examples):
    """1 for a completion with an even number of characters, else 0."""
    del examples
    return np.array([float(len(c) % 2 == 0) for c in completions])
