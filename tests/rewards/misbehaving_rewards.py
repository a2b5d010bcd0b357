"""A reward function that misbehaves on request, for the pool tests. It lives in a module of its
own (not a test file) because the pool's workers import reward functions by reference."""

import os
import time

import numpy as np


def misbehaving(completions, examples):
    """len(completion), unless a completion says RAISE, HANG, DIE or SHAPE."""
    del examples
    text = "".join(completions)
    if "RAISE" in text:
        raise RuntimeError("asked to raise")
    if "HANG" in text:
        time.sleep(3600)
    if "DIE" in text:
        os._exit(3)
    if "SHAPE" in text:
        return np.zeros(len(completions) + 1)
    return np.array([float(len(c)) for c in completions])
