import math
import os
import signal
import sys
import time

import numpy as np
import pytest

from r1jax import rewards

sys.path.insert(0, os.path.dirname(__file__))  # the workers import misbehaving_rewards from here
import misbehaving_rewards

rewards.register("test_misbehaving", misbehaving_rewards.misbehaving)
rewards.register_language("x-toy", frozenset({"blorp", "zanti", "quix"}).__contains__)

TIMEOUT_S = 2.0
GOOD = "<think>ok</think> <answer>\\boxed{1,000}</answer>"
# Non-zero under every reward, each a different value: accuracy 1, format 1, test_misbehaving
# its length, language 2/3 (two of its three words are x-toy's). A call that starts at the wrong
# reward after a failure shows.
SCORED = "<think>blorp zanti ok</think> <answer>\\boxed{1,000}</answer>"


def marked(marker):
    """SCORED asking test_misbehaving to misbehave, its other rewards unchanged."""
    return SCORED.replace("</answer>", f" {marker}</answer>")


@pytest.fixture(scope="module")
def scorer():
    with rewards.RewardScorer(
        {"accuracy": 1.0, "format": 0.5, "test_misbehaving": 0.01, "language": 1.0},
        num_workers=2,
        timeout_s=TIMEOUT_S,
    ) as scorer:
        yield scorer


def _examples(n, **fields):
    return [{"answer": "1000", "lang": "x-toy", **fields} for _ in range(n)]


def test_scores_and_weighted_total(scorer):
    completions = [GOOD, "<think>blorp zanti</think> <answer>\\boxed{7}</answer>", "no format"]
    total, terms, stats = scorer.score(completions, _examples(3))
    np.testing.assert_array_equal(terms["accuracy"], [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(terms["format"], [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(terms["test_misbehaving"], [len(c) for c in completions])
    np.testing.assert_array_equal(terms["language"], [0.0, 1.0, 0.0])
    expected = (
        terms["accuracy"]
        + 0.5 * terms["format"]
        + 0.01 * terms["test_misbehaving"]
        + terms["language"]
    )
    np.testing.assert_allclose(total, expected)
    assert all(
        v == 0 for k, v in stats.items() if k.endswith(("_errors", "_timeouts", "_unscorable"))
    )


def test_the_toy_worlds_kalo_is_known_to_the_workers(scorer):
    kalo = "<think>Ke fenako ezu 12. Zirok.</think> <answer>\\boxed{1000}</answer>"
    _, terms, _ = scorer.score([kalo, GOOD], _examples(2, lang="kalo"))
    np.testing.assert_array_equal(terms["language"], [1.0, 0.0])


def test_unscorable_gold_gives_nan_total(scorer):
    examples = _examples(2)
    examples[1]["answer"] = "\\frac{"
    total, terms, stats = scorer.score([GOOD, GOOD], examples)
    assert terms["accuracy"][0] == 1.0 and math.isnan(terms["accuracy"][1])
    assert not math.isnan(total[0]) and math.isnan(total[1])
    assert stats["reward/accuracy_unscorable"] == 1


def check_other_rewards(terms):
    """Every reward but test_misbehaving scored every completion, the failing one too."""
    np.testing.assert_array_equal(terms["accuracy"], 1.0)
    np.testing.assert_array_equal(terms["format"], 1.0)
    np.testing.assert_allclose(terms["language"], 2 / 3)


# HOG asks for the worker's whole memory cap: refused there, a MemoryError like a sympy blowup's.
@pytest.mark.parametrize("marker", ["RAISE", "DIE", "SHAPE", "HOG"])
def test_a_failing_call_scores_zero_and_is_counted(scorer, marker):
    completions = [SCORED] * 9 + [marked(marker)] + [SCORED] * 9
    _, terms, stats = scorer.score(completions, _examples(19))
    assert terms["test_misbehaving"][9] == 0.0
    np.testing.assert_array_equal(np.delete(terms["test_misbehaving"], 9), len(SCORED))
    check_other_rewards(terms)
    assert stats["reward/test_misbehaving_errors"] == 1
    assert stats["reward/test_misbehaving_timeouts"] == 0


def test_a_hung_call_times_out_and_the_pool_survives(scorer):
    completions = [SCORED] * 20 + [marked("HANG")] + [SCORED] * 20
    start = time.monotonic()
    _, terms, stats = scorer.score(completions, _examples(41))
    assert time.monotonic() - start < TIMEOUT_S + 5
    assert terms["test_misbehaving"][20] == 0.0
    np.testing.assert_array_equal(np.delete(terms["test_misbehaving"], 20), len(SCORED))
    check_other_rewards(terms)
    assert stats["reward/test_misbehaving_timeouts"] == 1
    assert stats["reward/test_misbehaving_errors"] == 0
    assert stats["reward/test_misbehaving_slowest_s"] >= TIMEOUT_S

    start = time.monotonic()
    _, terms, stats = scorer.score([GOOD] * 64, _examples(64))
    assert time.monotonic() - start < TIMEOUT_S  # a hung worker left in the pool would take that
    np.testing.assert_array_equal(terms["test_misbehaving"], len(GOOD))
    assert stats["reward/test_misbehaving_timeouts"] == 0


class Interrupted(Exception):
    pass


def test_an_interrupted_score_replaces_its_busy_workers_and_the_next_call_is_clean(scorer):
    """An interrupt (Ctrl-C, a SIGTERM handler raising) while a worker hangs: the worker would
    answer a later call with this one's results, or hang it; it must be replaced."""
    def interrupt(signum, frame):
        raise Interrupted

    processes = [w.process for w in scorer.workers]
    previous = signal.signal(signal.SIGALRM, interrupt)
    # The first completion hangs its worker; the interrupt comes before the pool's timeout could.
    signal.setitimer(signal.ITIMER_REAL, TIMEOUT_S / 4)
    try:
        with pytest.raises(Interrupted):
            scorer.score([marked("HANG")] + [SCORED] * 7, _examples(8))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    replaced = [p for p in processes if p not in [w.process for w in scorer.workers]]
    assert replaced and not any(p.is_alive() for p in replaced)
    assert all(w.process.is_alive() for w in scorer.workers)
    _, terms, stats = scorer.score([SCORED] * 16, _examples(16))
    np.testing.assert_array_equal(terms["test_misbehaving"], len(SCORED))
    check_other_rewards(terms)
    assert stats["reward/test_misbehaving_timeouts"] == stats["reward/test_misbehaving_errors"] == 0


def test_unknown_reward_and_mismatched_lengths_are_errors(scorer):
    with pytest.raises(KeyError, match="unknown reward 'nope'"):
        rewards.RewardScorer({"nope": 1.0})
    with pytest.raises(ValueError, match="2 completions but 1 examples"):
        scorer.score([GOOD, GOOD], _examples(1))


def test_code_reward_needs_a_timeout_above_the_sandbox_time():
    with pytest.raises(ValueError, match="timeout_s must exceed"):
        rewards.RewardScorer({"code": 1.0}, timeout_s=5.0)


def test_weighted_sum_propagates_nan():
    total = rewards.weighted_sum(
        {"a": np.array([1.0, np.nan]), "b": np.array([2.0, 3.0])}, {"a": 2.0, "b": 1.0}
    )
    assert total[0] == 4.0 and math.isnan(total[1])


def test_registry():
    assert rewards.get("format") is rewards.get("format")
    with pytest.raises(ValueError, match="already registered"):
        rewards.register("format", misbehaving_rewards.misbehaving)


def test_scoped_rewards_score_only_the_examples_that_name_them():
    """A mix of MATH and Countdown prompts: each correctness reward scores its own examples (it is
    not even called on the others, so a Countdown reward never sees a MATH example), format
    scores all, and an example naming no reward gets every term."""
    examples = [{"answer": "1000", "reward": "accuracy"},
                {"numbers": [3, 5, 7], "target": 22, "reward": "countdown"},
                {"answer": "1000", "numbers": [1, 2], "target": 3}]
    completions = [GOOD, "<think>x</think> <answer>3 * 5 + 7</answer>", GOOD]
    weights = {"accuracy": 1.0, "countdown": 2.0, "format": 0.5}
    with rewards.RewardScorer(weights, num_workers=1, scoped={"accuracy", "countdown"}) as s:
        total, terms, stats = s.score(completions, examples)
    np.testing.assert_array_equal(terms["accuracy"], [1.0, np.nan, 1.0])
    np.testing.assert_array_equal(terms["countdown"], [np.nan, 1.0, 0.1])
    np.testing.assert_array_equal(terms["format"], [1.0, 1.0, 1.0])
    np.testing.assert_allclose(total, [1.5, 2.5, 1.0 + 0.2 + 0.5])
    assert stats["reward/countdown_errors"] == stats["reward/countdown_unscorable"] == 0
    with pytest.raises(ValueError, match=r"scoped rewards \['countdown'\] are not among"):
        rewards.RewardScorer({"accuracy": 1.0}, scoped={"countdown"})
