"""A reward function that misbehaves on request, for the pool tests. It lives in a module of its
own (not a test file) because the pool's workers import reward functions by reference."""

import os
import time

import numpy as np

from r1jax.rewards import pool


def misbehaving(completions, examples):
    """len(completion), unless a completion says RAISE, HANG, DIE, SHAPE or HOG (asks for as
    much memory as a reward worker may hold in all)."""
    del examples
    text = "".join(completions)
    if "HOG" in text:
        np.empty(pool.WORKER_MEMORY_BYTES, np.uint8)  # untouched pages: fits when uncapped
    if "RAISE" in text:
        raise RuntimeError("asked to raise")
    if "HANG" in text:
        time.sleep(3600)
    if "DIE" in text:
        os._exit(3)
    if "SHAPE" in text:
        return np.zeros(len(completions) + 1)
    return np.array([float(len(c)) for c in completions])
