"""The run skeleton on a trivial job: cadence, resume, SIGTERM, the non-finite guard, settings."""

import os
import signal

import jax.numpy as jnp
import numpy as np
import pytest

from r1jax import loop, metrics, optim, rl, rollout
from r1jax.checkpoint import Checkpointer


class Counter:
    """A checkpointable iterator of 0, 1, 2, ..."""

    def __init__(self):
        self.index = 0

    def __next__(self):
        self.index += 1
        return self.index - 1

    def get_state(self):
        return {"index": self.index}

    def set_state(self, state):
        self.index = state["index"]


def job(skip_at=(), sigterm_at=None):
    """A step function that adds the next datum to the state; skips (leaving the state) at the
    0-based steps in ``skip_at``, and sends itself SIGTERM during step ``sigterm_at``."""
    data = Counter()

    def step_fn(state, step):
        if step == sigterm_at:
            os.kill(os.getpid(), signal.SIGTERM)
        x = next(data)
        if step in skip_at:
            return loop.StepResult(state, {"x": float(x)}, 1)
        return loop.StepResult({"total": state["total"] + x}, {"x": float(x)}, 0)

    return data, step_fn


def run(workdir, steps=5, checkpoint_every=2, max_nonfinite=3, **kwargs):
    data, step_fn = job(**kwargs)
    settings = loop.LoopSettings(steps, checkpoint_every, max_nonfinite)
    return loop.run(str(workdir), settings, {"total": jnp.zeros(())}, data, step_fn)


def test_a_run_finishes_logs_every_step_and_checkpoints_on_its_cadence(tmp_path):
    result = run(tmp_path)
    assert result.finished and result.step == 5
    assert float(result.state["total"]) == 0 + 1 + 2 + 3 + 4
    assert [m["x"] for m in metrics.read_metrics(tmp_path / "metrics.jsonl")] == [0, 1, 2, 3, 4]
    assert sorted(os.listdir(tmp_path / "checkpoints"), key=int) == ["4", "5"]  # two kept


def test_sigterm_checkpoints_the_step_and_a_rerun_resumes_it_exactly(tmp_path):
    stopped = run(tmp_path, sigterm_at=2)
    assert not stopped.finished and stopped.step == 3
    assert Checkpointer(str(tmp_path)).latest_step() == 3
    resumed = run(tmp_path)  # the iterator restarts at 0 and is moved to where step 3 left it
    assert resumed.finished and float(resumed.state["total"]) == 10
    assert [m["step"] for m in metrics.read_metrics(tmp_path / "metrics.jsonl")] == [1, 2, 3, 4, 5]


def test_a_skipped_step_is_never_checkpointed_and_enough_in_a_row_stop_the_run(tmp_path):
    result = run(tmp_path / "one", skip_at=(3,), checkpoint_every=4)
    assert result.finished and float(result.state["total"]) == 0 + 1 + 2 + 4
    assert sorted(os.listdir(tmp_path / "one" / "checkpoints"), key=int) == ["5"]  # not 4
    with pytest.raises(FloatingPointError, match="2 steps in a row had non-finite updates"):
        run(tmp_path / "two", skip_at=(2, 3), max_nonfinite=2)
    assert Checkpointer(str(tmp_path / "two")).latest_step() == 2  # the last good one


def test_bad_settings_are_errors_naming_the_key():
    with pytest.raises(ValueError, match="checkpoint_every must be at least 1"):
        loop.LoopSettings(steps=5, checkpoint_every=0, max_nonfinite_in_row=1)
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        optim.OptimizerSettings(lr=1e-3, total_steps=10, schedule="linear")
    with pytest.raises(ValueError, match="aggregation 'tokens'"):
        rl.UpdateSettings.from_config(_rl_config(aggregation="tokens"))
    with pytest.raises(ValueError, match="group_size must be at least 2"):
        rollout.RolloutSettings.from_config(_rl_config(group_size=1))


def _rl_config(**overrides):
    c = rl.default_config()
    c.update(overrides)
    return c


def test_loss_terms_combine_adds_sums_and_takes_maxima():
    a = optim.LossTerms(jnp.float32(1.0), jnp.float32(2.0), {"n": 3.0, "ratio_max": 1.5})
    b = optim.LossTerms(jnp.float32(4.0), jnp.float32(5.0), {"n": 6.0, "ratio_max": 0.5})
    c = a.combine(b)
    np.testing.assert_array_equal([c.loss_sum, c.denom, c.stats["n"], c.stats["ratio_max"]],
                                  [5.0, 7.0, 9.0, 1.5])


def test_cosine_schedule_decays_to_the_end_fraction_of_the_learning_rate():
    """R1's SFT: linear warm-up, then cosine to a tenth (numpy formula as the reference)."""
    lr, warmup, total, end = 2e-3, 10, 110, 0.1
    schedule = optim.learning_rate_schedule(lr, warmup, total, "cosine", end)
    steps = np.arange(total + 1)
    t = np.clip(steps - warmup, 0, total - warmup) / (total - warmup)
    expected = np.where(steps < warmup, lr * steps / warmup,
                        lr * (end + (1 - end) * 0.5 * (1 + np.cos(np.pi * t))))
    np.testing.assert_allclose([float(schedule(s)) for s in steps], expected, rtol=1e-5)
    assert float(schedule(total)) == pytest.approx(lr * end)
    with pytest.raises(ValueError, match="end_lr_fraction in"):
        optim.OptimizerSettings(lr=1e-3, total_steps=10, end_lr_fraction=1.5)


def test_closing_goes_on_past_a_failure_and_reports_the_first():
    closed = []

    class Resource:
        def __init__(self, name, error=None):
            self.name, self.error = name, error

        def close(self):
            closed.append(self.name)
            if self.error:
                raise self.error

    first, second = OSError("disk full"), ValueError("later")
    got = loop._close_each(Resource("checkpoints", first), Resource("metrics", second),
                           Resource("progress"))
    assert got is first and closed == ["checkpoints", "metrics", "progress"]
