import hashlib
import json
import random
import re
import time

import numpy as np
import pytest

from r1jax import rewards
from r1jax.data import tasks
from r1jax.data.languages import KALO, translate

BILINGUAL = ("en", KALO)


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


def test_english_alone_gives_the_examples_as_they_were_before_languages():
    examples = [tasks.make_split(task, "train", 300, seed=0) for task in tasks.TASKS]
    # sha256 of these examples as the code before languages wrote them (the reference run's data).
    digest = "1f4c4dfe442fe9be1b7cd76f3935c190409c37dafbb6bb43d438be720cfb3f6b"
    assert hashlib.sha256(json.dumps(examples).encode()).hexdigest() == digest
    assert examples[0] == tasks.make_split("arithmetic", "train", 300, 0, languages=("en",))
    assert not any("lang" in e for split in examples for e in split)


@pytest.mark.parametrize("task", tasks.TASKS)
def test_bilingual_examples_are_the_same_problems_each_in_its_language(task):
    english = tasks.make_split(task, "test", 2000, seed=1, levels=(1, 3))
    bilingual = tasks.make_split(task, "test", 2000, seed=1, levels=(1, 3), languages=BILINGUAL)
    for en, ex in zip(english, bilingual, strict=True):
        assert ex == {**en, "question": translate(en["question"], ex["lang"]), "lang": ex["lang"]}
    # Uniform: the Kalo share of 2000 draws is 1/2 within 4 standard deviations (0.011 each).
    assert abs(np.mean([e["lang"] == KALO for e in bilingual]) - 0.5) < 4 * (0.25 / 2000) ** 0.5
    kalo = tasks.make_split(task, "test", 50, seed=1, levels=(1, 3), languages=(KALO,))
    assert {e["lang"] for e in kalo} == {KALO}
    scores = rewards.get(tasks.REWARDS[task])([completion(e["answer"]) for e in kalo], kalo)
    np.testing.assert_array_equal(scores, 1.0)


@pytest.mark.parametrize("bad", [(), ("fr",), ("en", "en"), ("kalo", "xx")])
def test_unknown_languages_are_named(bad):
    with pytest.raises(ValueError, match=r"make_split: languages .* must be distinct codes among"):
        tasks.make_split("sums", "train", 1, seed=0, languages=bad)
