"""Reward functions by name, the example fields each reads, and the weighted sum a config asks for.

A reward function takes the decoded completions and their examples (dicts with the gold answer,
target language, tests, ...) and returns a float array with one value per completion, NaN where the
example cannot be scored (an unparseable gold answer, a missing field). The pool calls it on one
completion at a time and ships it to worker processes by pickle reference, so a registered function
must be defined at the top level of an importable module.

A NaN is right for one odd example but wrong for a whole data set: an example field the data never
has (the `language` reward's "lang" on problems posed without a language) makes every completion
NaN, and GRPO, which gives NaN advantage 0, learns nothing from that reward without a word. So a
reward declares the fields it reads (`register(name, fields=...)`) and `check_fields` stops a run
whose data lacks one before a model is loaded.
"""

from collections.abc import Callable, Mapping, Sequence

import numpy as np

RewardFn = Callable[[Sequence[str], Sequence[dict]], np.ndarray]

_REWARDS: dict[str, RewardFn] = {}
_FIELDS: dict[str, tuple[str, ...]] = {}  # reward name -> the example fields it reads


def register(name: str, fn: RewardFn | None = None, fields: Sequence[str] = ()):
    """Registers `fn` under `name`, reading the example `fields` (which `check_fields` requires of
    the data); without `fn`, returns a decorator that does."""
    if fn is None:
        return lambda f: register(name, f, fields)
    old = _REWARDS.get(name)
    if old is not None and (old.__module__, old.__qualname__) != (fn.__module__, fn.__qualname__):
        raise ValueError(
            f"reward {name!r} is already registered to {old.__module__}.{old.__qualname__}"
        )
    _REWARDS[name] = fn
    _FIELDS[name] = tuple(fields)
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


def applies(name: str, example: dict, scoped) -> bool:
    """Whether reward `name` scores `example`: unscoped rewards score every example, scoped ones
    those that name them (example["reward"]: a name or a tuple of names) or name no reward (see
    `r1jax.rewards.pool`)."""
    named = example.get("reward")
    return (name not in scoped or named is None or named == name
            or (not isinstance(named, str) and name in named))


def check_fields(weights: Mapping[str, float], examples: Sequence[dict], scoped=None) -> None:
    """Each reward of `weights` finds the example fields it reads in every example it scores
    (`applies`, with the pool's `scoped`); a ValueError naming the reward, the field and the
    example otherwise, and a KeyError for an unknown reward."""
    scoped = frozenset(scoped or ())
    for name, weight in weights.items():
        get(name)  # an unknown name is a KeyError listing the registered rewards
        for field in _FIELDS[name]:
            for i, example in enumerate(examples):
                if applies(name, example, scoped) and example.get(field) is None:
                    which = repr(example["id"]) if "id" in example else f"#{i} of the batch"
                    raise ValueError(
                        f"reward {name!r} (weight {weight}) reads example field {field!r}, which "
                        f"example {which} lacks: it would score NaN on every completion of such "
                        f"examples, and GRPO learn nothing from it. Give the examples that field "
                        f"or leave the reward out."
                    )
