import timeit

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
def test_never_raises_and_full_credit_means_the_exact_shape(text):
    value = rewards.format_reward([text])[0]
    assert value in (0.0, 1.0)
    if value == 1.0:  # full credit implies the exact shape
        assert all(text.count(tag) == 1 for tag in ("<think>", "</think>", "<answer>", "</answer>"))
        assert text.strip().startswith("<think>") and text.strip().endswith("</answer>")


def _fastest_s(fn):
    return min(timeit.repeat(fn, number=1, repeat=5))  # the least disturbed by other load


@pytest.mark.parametrize("text", [
    "<think>" * 5_000 + "</answer>",  # every search for a block's end starts over: quadratic
    "<think>" + "x" * 100_000 + "</think><answer>1</answer>",  # every check runs to the end
], ids=["repeated_tag", "long_reasoning"])
def test_time_is_a_few_passes_over_the_text(text):
    # The checks are a fixed number of str.count / find / strip passes (the module docstring);
    # 20 passes is far more, and far less than a quadratic search of these texts.
    one_pass = _fastest_s(lambda: text.count("<"))
    assert _fastest_s(lambda: rewards.format_reward([text])) < 20 * one_pass


# --- R1's readable format: a summary between </think> and <answer> ---------------------------

TAGS = ("<think>", "</think>", "<answer>", "</answer>")
READABLE = [
    " <think> 3 + 7 = 10. 10 + 2 = 12. </think> 3 + 7 + 2 = 12. <answer> 12 </answer>",
    "<think>x</think>\nIn short: 4.\n<answer>4</answer>\n",
]
NOT_READABLE = [
    *WELL_FORMED,  # no summary
    "<think>x</think> \n <answer>4</answer>",  # a summary of whitespace
    "<think>x</think> so <answer>4</answer> and then some",
    "<think>x</think> so </think> <answer>4</answer>",  # a tag in the summary
    "<think> </think> so <answer>4</answer>",
    "<think>x</think> so <answer> </answer>",
    "<answer>4</answer> so <think>x</think>",
]


@pytest.mark.parametrize("text", READABLE)
def test_readable(text):
    assert rewards.get("summary_format")([text], [{}])[0] == 1.0
    assert rewards.format_reward([text])[0] == 0.0  # R1-Zero's format wants nothing in between


@pytest.mark.parametrize("text", NOT_READABLE)
def test_not_readable(text):
    assert rewards.format_reward([text], summary=True)[0] == 0.0


# Free text: anything with more than whitespace and none of the four tags (it may hold their
# pieces: "<", "think", "/answer>").
FREE = st.one_of(
    st.text(min_size=1),
    st.lists(st.sampled_from([*PIECES[4:], "think", "answer", "</think", "answer>"]),
             min_size=1, max_size=20).map("".join),
).filter(lambda s: s.strip() and not any(tag in s for tag in TAGS))


def assemble(reasoning, summary, answer):
    """The completion in R1's readable format, or in R1-Zero's when `summary` is None, as a list
    of pieces: the odd ones are the tags."""
    between = f" {summary} " if summary is not None else " "
    return [" ", "<think>", f" {reasoning} ", "</think>", between, "<answer>", f" {answer} ",
            "</answer>", ""]


@settings(max_examples=300, deadline=None)
@given(reasoning=FREE, summary=FREE, answer=FREE)
def test_reasoning_summary_answer_in_the_readable_format(reasoning, summary, answer):
    readable = "".join(assemble(reasoning, summary, answer))
    assert rewards.get("summary_format")([readable], [{}])[0] == 1.0
    assert rewards.get("format")([readable], [{}])[0] == 0.0
    r1_zero = "".join(assemble(reasoning, None, answer))
    assert rewards.get("summary_format")([r1_zero], [{}])[0] == 0.0
    assert rewards.get("format")([r1_zero], [{}])[0] == 1.0


@settings(max_examples=300, deadline=None)
@given(reasoning=FREE, summary=st.one_of(st.none(), FREE), answer=FREE, data=st.data())
def test_a_stray_tag_anywhere_is_rejected_by_both_formats(reasoning, summary, answer, data):
    """A tag added to a well-formed completion (of either format) anywhere but inside one of its
    tags, where it would break that tag ("</th</think>ink>" holds one "</think>")."""
    pieces = assemble(reasoning, summary, answer)
    free = data.draw(st.sampled_from(range(0, len(pieces), 2)))  # the text around the tags
    at = data.draw(st.integers(0, len(pieces[free])))
    tag = data.draw(st.sampled_from(TAGS))
    pieces[free] = pieces[free][:at] + tag + pieces[free][at:]
    text = "".join(pieces)
    assert rewards.format_reward([text])[0] == 0.0
    assert rewards.format_reward([text], summary=True)[0] == 0.0
