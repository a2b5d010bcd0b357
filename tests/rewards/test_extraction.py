"""Lenient answer extraction for evaluation (math-verify's, as public evaluators credit answers)
and the judge's two extraction settings."""

import inspect
import threading
import time
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from math_verify import parse, verify

from r1jax import rewards
from r1jax.rewards import extraction


@pytest.mark.parametrize(
    "completion, answer",
    [
        ("Adding the two groups, so the final answer is 34.", "34"),
        (r"Therefore x = \frac{1}{2}", r"\frac{1}{2}"),
        (r"The answer is $\sqrt{2}$", r"\sqrt{2}"),
        (r"We get \boxed{7}. Check: 3 + 4 = 7, and 12 more give 19.", "7"),  # boxed wins
        (r"The final answer is $\boxed{[0, 1)}$", "[0, 1)"),
        ("Answer: 3 x 4 = 12", "12"),
        ("There are 1,250 marbles in the jar.", "1250"),
        ("The discount is 25%.", "25\\%"),  # the sign is kept: math-verify reads 0.25
        ("<think>7 times 5</think> <answer> 35 </answer>", "35"),
        ("I do not know how to proceed here.", None),
        ("", None),
    ],
)
def test_extracts_what_math_verify_finds(completion, answer):
    assert rewards.math_verify_answer(completion) == answer


@pytest.mark.parametrize(
    "completion",
    [
        r"so $\frac{1}{2}$, not $\sqrt{}$",  # parse's string would be the unparseable \sqrt{}
        r"We get $3$ and then $\left($",
        r"\boxed{\frac{}{}} so the final answer is 4",
        r"Hence $$y = 2 + 5 = 7$$",
        r"the roots are $2$ and $-3$",
        "so it is 3/4 of the cake",
    ],
)
def test_the_answer_is_the_match_math_verify_keeps(completion):
    kept = parse(completion, extraction.TARGETS, parsing_timeout=None)
    answer = rewards.math_verify_answer(completion)
    assert verify(kept, parse("\\boxed{" + answer + "}", parsing_timeout=None),
                  timeout_seconds=None)


# (completion, gold): answers strict extraction (\boxed or <answer>) does not see.
UNBOXED = [
    ("Adding the two groups, so the final answer is 34.", "34"),
    (r"Therefore x = \frac{1}{2}", "0.5"),
    (r"The answer is $\sqrt{2}$", r"\frac{2}{\sqrt{2}}"),
    ("There are 1,250 marbles in the jar.", "1250"),
    ("The discount is 25%.", "0.25"),
    ("The discount is 25%.", "25"),
]


@pytest.mark.parametrize("completion, gold", UNBOXED)
def test_math_verify_credits_what_strict_misses(completion, gold):
    problem = {"answer": gold}
    assert rewards.judge("accuracy", completion, problem, extraction="strict") == (False, None)
    correct, answer = rewards.judge("accuracy", completion, problem, extraction="math_verify")
    assert correct and answer == rewards.math_verify_answer(completion)
    assert rewards.accuracy([completion], [gold])[0] == 0.0  # the RL reward stays strict


def test_judge_defaults_to_the_rl_rule():
    # r1jax.evaluate passes "math_verify" explicitly; direct callers keep today's verdicts.
    assert inspect.signature(rewards.judge).parameters["extraction"].default == "strict"


@pytest.mark.parametrize("extraction_name", rewards.judging.EXTRACTIONS)
def test_both_extractions_agree_on_boxed_answers_and_wrong_ones(extraction_name):
    def judge(completion, gold):
        return rewards.judge("accuracy", completion, {"answer": gold}, extraction_name)

    assert judge(r"so \boxed{\frac{1}{2}}", "0.5") == (True, r"\frac{1}{2}")
    assert judge(r"<answer>\boxed{35}</answer>", "34") == (False, "35")
    assert judge("no number here", "34") == (False, None)


def test_a_wrong_unboxed_answer_is_found_and_judged_wrong():
    assert rewards.judge("accuracy", "the final answer is 35", {"answer": "34"},
                         extraction="math_verify") == (False, "35")


TOY_CASES = [
    ("arithmetic", {"answer": "1309"}, "<think>x</think> <answer> 1,309 </answer>"),
    ("arithmetic", {"answer": "1309"}, "so the final answer is 1309."),
    ("arithmetic", {"answer": "1309"}, r"\boxed{1309}"),
    ("countdown", {"numbers": [3, 5, 7], "target": 22}, "<answer>3 * 5 + 7</answer>"),
    ("countdown", {"numbers": [3, 5, 7], "target": 22}, "the final answer is 3 * 5 + 7 = 22"),
    ("choice", {"options": ["w", "x", "y", "z"], "answer": "B"}, r"so \boxed{B}"),
    ("choice", {"options": ["w", "x", "y", "z"], "answer": "B"}, "<answer>(C)</answer>"),
    ("choice", {"options": ["w", "x", "y", "z"], "answer": "B"}, "The final answer is B"),
]


@pytest.mark.parametrize("reward, problem, completion", TOY_CASES)
def test_extraction_does_not_change_other_rewards(reward, problem, completion):
    strict = rewards.judge(reward, completion, problem, extraction="strict")
    assert rewards.judge(reward, completion, problem, extraction="math_verify") == strict


def test_unknown_extraction_is_an_error():
    with pytest.raises(ValueError, match="math_verify"):
        rewards.judge("accuracy", r"\boxed{1}", {"answer": "1"}, extraction="lenient")


ADVERSARIAL = {
    "digits": "1 " * 100_000,  # 200k characters; one of math-verify's regexes is quadratic on it
    "braces": "{" * 100_000 + "}" * 100_000,
    "open_boxes": r"\boxed{" * 20_000,
    "nested_box": r"\boxed{" + "{" * 40 + "1" + "}" * 40 + "}",
    "nested_parens": "$" + "(" * 30 + "1" + ")" * 30 + "$",  # parse time exponential in depth
}


# Bounds are on this thread's CPU time, which neither another job on the machine nor another
# thread of the test process (JAX's, orbax's, left by earlier tests) stretches; the deadline is
# wall-clock, so load can only make the work done before it smaller.


@pytest.mark.parametrize("completion", ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
def test_adversarial_completions_are_bounded(completion):
    with mock.patch.object(extraction, "DEADLINE_S", 0.3):
        start = time.thread_time()
        answer = rewards.math_verify_answer(completion)
        assert answer is None or isinstance(answer, str)
        # The deadline plus slack for the work around it (1.02 s once in a full suite run);
        # unbounded, nested_parens alone takes over 5 s.
        assert time.thread_time() - start < 0.3 + 1.5


def test_a_huge_power_is_extracted_but_never_evaluated():
    start = time.thread_time()
    for completion, answer in [(r"so \boxed{9^{9^{9^9}}}", "9^{9^{9^9}}"),
                               ("so the answer: 9^9^9^9", "9^9^9^9")]:
        assert rewards.judge("accuracy", completion, {"answer": "5"},
                             extraction="math_verify") == (False, answer)
    assert time.thread_time() - start < 1.0


def test_works_off_the_main_thread():
    results = []
    thread = threading.Thread(
        target=lambda: results.append(rewards.math_verify_answer("the final answer is 34")))
    thread.start()
    thread.join()
    assert results == ["34"]


PIECES = [r"\boxed{", "{", "}", "$", "$$", r"\(", r"\)", r"\[", r"\]", r"\frac", "^", "(", ")",
          "final answer is ", "Answer: ", " and ", "%", "=", "1", "0.5", "-", "/", ",", " ", "x",
          "\n", "\\", "I hope"]
TEXT = st.one_of(st.text(max_size=300), st.lists(st.sampled_from(PIECES), max_size=80).map("".join))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXT)
def test_never_raises_and_returns_str_or_none(text):
    with mock.patch.object(extraction, "DEADLINE_S", 0.3):
        start = time.monotonic()
        answer = rewards.math_verify_answer(text)
        assert answer is None or (isinstance(answer, str) and answer == answer.strip() != "")
        assert time.monotonic() - start < 0.3 + 0.5
