"""The example fields rewards declare, and `check_fields`, which stops a run whose data lacks one
(the reward would be NaN on every completion and teach nothing) before a model is loaded."""

import numpy as np
import pytest

from r1jax import rewards
from r1jax.data import tasks
from r1jax.rewards import registry


def reads_foo(completions, examples):
    return np.array([float(e["foo"]) for e in examples])


rewards.register("test_reads_foo", reads_foo, fields=("foo",))


def test_builtin_rewards_declare_the_fields_they_read():
    assert {name: registry._FIELDS[name] for name in (
        "accuracy", "arithmetic", "choice", "code", "countdown", "format", "language")} == {
        "accuracy": ("answer",), "arithmetic": ("answer",), "choice": ("answer",),
        "code": ("tests",), "countdown": ("numbers", "target"), "format": (),
        "language": ("lang",)}


def test_a_missing_field_names_the_reward_the_field_and_the_example():
    examples = tasks.make_split("sums", "train", 4, seed=0)
    with pytest.raises(ValueError, match=r"^reward 'language' \(weight 1\.0\) reads example field "
                                         r"'lang', which example 'sums/train/0/0' lacks: "):
        rewards.check_fields({"arithmetic": 1.0, "language": 1.0}, examples)
    with pytest.raises(ValueError, match=r"'foo', which example #1 of the batch lacks"):
        rewards.check_fields({"test_reads_foo": 0.5}, [{"foo": 1}, {"foo": None}])


def test_fields_present_pass():
    for task in tasks.TASKS:
        examples = tasks.make_split(task, "train", 20, seed=0, languages=("en", "kalo"))
        rewards.check_fields({tasks.REWARDS[task]: 1.0, "format": 1.0, "language": 0.1}, examples)
    rewards.check_fields({"format": 1.0}, [{}])


def test_a_scoped_reward_is_checked_on_its_own_sources_only():
    math = {"id": "math/0", "question": "q", "answer": "1", "reward": "accuracy"}
    countdown = {"id": "countdown/0", "question": "q", "answer": "", "numbers": [3, 5, 7],
                 "target": 22, "reward": "countdown"}
    weights = {"accuracy": 1.0, "countdown": 1.0, "format": 1.0}
    scoped = {"accuracy", "countdown"}
    rewards.check_fields(weights, [math, countdown], scoped)
    with pytest.raises(ValueError, match="reward 'countdown' .* 'numbers', which example 'math/0'"):
        rewards.check_fields(weights, [math, countdown])  # unscoped: countdown scores MATH too
    del countdown["target"]
    with pytest.raises(ValueError, match="'target', which example 'countdown/0' lacks"):
        rewards.check_fields(weights, [math, countdown], scoped)
    with pytest.raises(ValueError, match="reward 'language' .* which example 'math/0' lacks"):
        rewards.check_fields({**weights, "language": 1.0}, [math], scoped)  # unscoped: all


def test_an_unknown_reward_is_named():
    with pytest.raises(KeyError, match="unknown reward 'acuracy'"):
        rewards.check_fields({"acuracy": 1.0}, [{"answer": "1"}])
