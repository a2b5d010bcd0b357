"""A simple rule reward for the training-loop tests. A module of its own because the reward pool's
worker processes import reward functions by reference."""

import numpy as np


def share_of_a(completions, examples):
    """The share of the completion's letters that are 'a' (0 for a completion without letters)."""
    del examples
    out = []
    for text in completions:
        letters = [c for c in text if c.isalpha()]
        out.append(letters.count("a") / len(letters) if letters else 0.0)
    return np.asarray(out)
