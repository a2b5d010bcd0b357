"""A simple rule reward for the training-loop tests. A module of its own because the reward pool's
worker processes import reward functions by reference."""

import numpy as np


def share_of_a(completions, examples):
    """The share of the completion's letters that are 'a' (0 for a completion without letters),
    and 0 for every completion of an example marked "flat" (its group's rewards are equal)."""
    out = []
    for text, example in zip(completions, examples, strict=True):
        letters = [c for c in text if c.isalpha()]
        flat = example.get("flat") or not letters
        out.append(0.0 if flat else letters.count("a") / len(letters))
    return np.asarray(out)
