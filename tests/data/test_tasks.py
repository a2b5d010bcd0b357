import random
import re
import time

import numpy as np
import pytest

from r1jax import rewards
from r1jax.data import tasks


def completion(answer):
    return f"<think> x </think> <answer> {answer} </answer>"


@pytest.mark.parametrize("task", tasks.TASKS)
def test_same_seed_same_examples_other_seed_others(task):
    a = tasks.make_split(task, "train", 200, seed=0)
    assert a == tasks.make_split(task, "train", 200, seed=0)
    assert [e["question"] for e in a] != [
        e["question"] for e in tasks.make_split(task, "train", 200, 1)
    ]
    assert len({e["id"] for e in a}) == 200


@pytest.mark.parametrize("task", tasks.TASKS)
def test_train_and_test_share_no_problem(task):
    def keys(split, seed):
        return {
            (e["question"] if task != "countdown" else (tuple(sorted(e["numbers"])), e["target"]))
            for e in tasks.make_split(task, split, 2000, seed)
        }

    test = keys("test", 0)
    assert not test & (keys("train", 0) | keys("train", 1))
    assert len(test) > 1000  # mostly distinct problems; level 1 has few


@pytest.mark.parametrize("task", tasks.TASKS)
def test_gold_answers_earn_full_reward(task):
    examples = tasks.make_split(task, "test", 1000, seed=0)
    scores = rewards.get(tasks.REWARDS[task])([completion(e["answer"]) for e in examples], examples)
    np.testing.assert_array_equal(scores, 1.0)


def test_arithmetic_levels_and_values():
    for e in tasks.make_split("arithmetic", "train", 400, seed=2):
        a, op, b = re.fullmatch(r"Compute (\d+) ([-+*]) (\d+)", e["question"]).groups()
        assert len(a) == e["level"] and (len(b) == 1 if op == "*" else len(b) == e["level"])
        assert (
            int(e["answer"])
            == {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
        )


def test_sums_levels_and_values():
    for e in tasks.make_split("sums", "train", 400, seed=2):
        terms = [int(t) for t in re.fullmatch(r"Add (\d( \+ \d)+)", e["question"])[1].split(" + ")]
        assert len(terms) == e["level"] + 2 and min(terms) >= 1
        assert int(e["answer"]) == sum(terms)


def test_countdown_levels_and_question():
    sizes = {1: (3, 9), 2: (3, 30), 3: (4, 30), 4: (4, 99)}
    for e in tasks.make_split("countdown", "train", 400, seed=2, levels=(1, 2, 3, 4)):
        count, largest = sizes[e["level"]]
        assert len(e["numbers"]) == count and all(1 <= n <= largest for n in e["numbers"])
        assert 1 <= e["target"] <= 100
        assert f"{e['numbers']}" in e["question"] and f"equals {e['target']}." in e["question"]


def test_levels_cycle():
    examples = tasks.make_split("arithmetic", "test", 6, seed=0, levels=(2, 4))
    assert [e["level"] for e in examples] == [2, 4, 2, 4, 2, 4]


def test_combine_uses_every_number_once_and_needs_no_parentheses_it_lacks():
    rng = random.Random(0)
    for _ in range(2000):
        numbers = [rng.randint(1, 30) for _ in range(rng.choice((3, 4)))]
        c = tasks.combine(numbers, rng)
        assert sorted(map(int, re.findall(r"\d+", c.equation))) == sorted(numbers)
        assert (
            rewards.get("countdown")(
                [completion(c.equation)], [{"numbers": numbers, "target": c.value}]
            )[0]
            == 1.0
        )
        assert [z for *_, z in c.steps][-1] == c.value


@pytest.mark.parametrize(
    "bad",
    [
        ("sudoku", "train", (1,)),
        ("countdown", "dev", (1,)),
        ("countdown", "train", (5,)),
        ("countdown", "train", ()),
    ],
)
def test_bad_arguments_are_named(bad):
    task, split, levels = bad
    with pytest.raises(ValueError, match=repr(task) if task == "sudoku" else "split|Levels"):
        tasks.make_split(task, split, 1, seed=0, levels=levels)


def test_thousands_per_second():
    start = time.perf_counter()
    tasks.make_split("countdown", "train", 2000, seed=0)
    tasks.make_split("arithmetic", "train", 2000, seed=0)
    assert time.perf_counter() - start < 2.0
