"""Reward functions by name, and the weighted sum a config asks for.

A reward function takes the decoded completions and their examples (dicts with the gold answer,
target language, tests, ...) and returns a float array with one value per completion, NaN where the
example cannot be scored (an unparseable gold answer, a missing field). The pool calls it on one
completion at a time and ships it to worker processes by pickle reference, so a registered function
must be defined at the top level of an importable module.
"""

from collections.abc import Callable, Sequence

import numpy as np

RewardFn = Callable[[Sequence[str], Sequence[dict]], np.ndarray]

_REWARDS: dict[str, RewardFn] = {}


def register(name: str, fn: RewardFn | None = None):
    """Registers `fn` under `name`; without `fn`, returns a decorator that does."""
    if fn is None:
        return lambda f: register(name, f)
    old = _REWARDS.get(name)
    if old is not None and (old.__module__, old.__qualname__) != (fn.__module__, fn.__qualname__):
        raise ValueError(
            f"reward {name!r} is already registered to {old.__module__}.{old.__qualname__}"
        )
    _REWARDS[name] = fn
    return fn


def get(name: str) -> RewardFn:
    if name not in _REWARDS:
        raise KeyError(
            f"unknown reward {name!r}; registered rewards: {', '.join(sorted(_REWARDS))}"
        )
    return _REWARDS[name]


def weighted_sum(terms: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """sum_k weights[k] * terms[k]. A NaN term makes that completion's total NaN on purpose: the
    completion cannot be scored, and GRPO must give it advantage 0 rather than a made-up reward."""
    return sum(float(w) * np.asarray(terms[k], dtype=np.float64) for k, w in weights.items())
