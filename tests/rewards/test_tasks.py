import math

import numpy as np
import pytest

from r1jax import rewards

COUNTDOWN = {"numbers": [3, 5, 7], "target": 8}


@pytest.mark.parametrize(
    "completion, score",
    [
        ("<think>x</think><answer>3 * 5 - 7</answer>", 1.0),
        ("<answer>(7 - 5) * 3 + 2 * 1</answer>", 0.1),  # numbers not from the list
        ("<answer>(7 + 5) / 3 * 2</answer>", 0.1),  # 2 is not given
        ("<answer>7 + 5 - 3</answer>", 0.1),  # right numbers, wrong value
        ("<answer>5 + 7</answer>", 0.1),  # a number unused
        ("<answer>3 * 5 - 7 = 8</answer>", 0.1),  # "=" is not part of the expression
        ("<answer>3 / (5 - 5) + 7</answer>", 0.1),
        ("<answer>-3 + 5 + 7</answer>", 0.1),  # no unary minus
        ("<answer>" + "(" * 100 + "3 * 5 - 7" + ")" * 100 + "</answer>", 0.1),
        ("<answer>__import__('os')</answer>", 0.1),
        ("<answer>" + "1" * 100_000 + "</answer>", 0.1),
        ("<answer>3*5-7</answer> more <answer>7 + 5 - 3</answer>", 0.1),  # the last block counts
        ("3 * 5 - 7", 0.0),  # no answer block
    ],
)
def test_countdown(completion, score):
    assert rewards.get("countdown")([completion], [COUNTDOWN])[0] == score


def test_countdown_exact_rational_arithmetic():
    example = {"numbers": [1, 3, 4, 6], "target": 24}
    assert rewards.get("countdown")(["<answer>6 / (1 - 3 / 4)</answer>"], [example])[0] == 1.0


@pytest.mark.parametrize("example", [{}, {"numbers": [1, 2]}, {"numbers": ["a"], "target": 3}])
def test_countdown_malformed_example_is_nan(example):
    assert math.isnan(rewards.get("countdown")(["<answer>1+2</answer>"], [example])[0])


def test_arithmetic():
    completions = [
        r"\boxed{1,000}",
        "<answer>-3.50</answer>",
        "<answer>1000.</answer>",
        r"\boxed{10}",
        "none",
        r"\boxed{\frac{1}{2}}",
    ]
    golds = ["1000", -3.5, 1000, "11", 5, "0.5"]
    scores = rewards.get("arithmetic")(completions, [{"answer": g} for g in golds])
    np.testing.assert_array_equal(scores, [1, 1, 1, 0, 0, 0])
    assert math.isnan(rewards.get("arithmetic")(["1"], [{"answer": "abc"}])[0])


@pytest.mark.parametrize(
    "completion, gold, score",
    [
        (r"\boxed{B}", "B", 1.0),
        ("<answer>(C) 42</answer>", "C", 1.0),
        (r"<answer>\text{(A)}</answer>", "A", 1.0),
        ("<answer>B. 42</answer>", "(B)", 1.0),
        ("<answer>B</answer>", "C", 0.0),
        ("<answer>I think B</answer>", "B", 0.0),
        ("<answer>A or B</answer>", "B", 0.0),
    ],
)
def test_choice(completion, gold, score):
    assert rewards.get("choice")([completion], [{"answer": gold}])[0] == score


def test_choice_bad_gold_is_nan():
    assert math.isnan(rewards.get("choice")(["<answer>B</answer>"], [{"answer": "42"}])[0])
