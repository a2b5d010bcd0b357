import time

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from r1jax import rewards

WELL_FORMED = [
    "<think>2+2=4</think><answer>4</answer>",
    " <think>\nreasoning\n</think>\n<answer>\n4\n</answer>\n",
    "<think>a</think>   <answer>b</answer>   ",
]
BADLY_FORMED = [
    "",
    "4",
    "<answer>4</answer>",  # no reasoning
    "<think>x</think>",  # no answer
    "<think>x</think><answer>4</answer> and then some",  # text after the answer
    "<think>x</think><answer>4</answer></answer></answer>",  # TinyZero's tag spam
    "<think>x</think><answer>4</answer><answer>5</answer>",
    "<think>x</think> so <answer>4</answer>",  # text between the blocks
    "<think>x<think>y</think><answer>4</answer>",
    "<answer>4</answer><think>x</think>",  # wrong order
    "<think> </think><answer>4</answer>",  # empty reasoning
    "<think>x</think><answer> \n </answer>",  # empty answer
    "preamble <think>x</think><answer>4</answer>",
    "<think>x</think><answer>4",  # truncated
]


@pytest.mark.parametrize("text", WELL_FORMED)
def test_well_formed(text):
    assert rewards.format_reward([text])[0] == 1.0


@pytest.mark.parametrize("text", BADLY_FORMED)
def test_badly_formed(text):
    assert rewards.format_reward([text])[0] == 0.0


def test_batch_and_registered_term():
    np.testing.assert_array_equal(
        rewards.format_reward(WELL_FORMED + BADLY_FORMED[:2]), [1, 1, 1, 0, 0]
    )
    np.testing.assert_array_equal(rewards.get("format")(WELL_FORMED[:1], [{}]), [1.0])


PIECES = ["<think>", "</think>", "<answer>", "</answer>", "x", " ", "\n", "<", ">", "/"]


@settings(max_examples=300, deadline=None)
@given(
    text=st.one_of(
        st.text(max_size=200), st.lists(st.sampled_from(PIECES), max_size=40).map("".join)
    )
)
@example(text="<think>" * 50_000)
@example(text="<think>" + "x" * 100_000 + "</think><answer>1</answer>")
def test_never_raises_and_is_fast(text):
    start = time.monotonic()
    value = rewards.format_reward([text])[0]
    assert value in (0.0, 1.0)
    assert time.monotonic() - start < 0.1
    if value == 1.0:  # full credit implies the exact shape
        assert all(text.count(tag) == 1 for tag in ("<think>", "</think>", "<answer>", "</answer>"))
        assert text.strip().startswith("<think>") and text.strip().endswith("</answer>")
