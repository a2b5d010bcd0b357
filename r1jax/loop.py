"""The run skeleton every training job uses (RL, SFT, pretraining): resume, metrics, progress,
SIGTERM, the non-finite guard and checkpoint cadence.

A job supplies its state (a dict of array pytrees: params, optimizer state, reference, ...), a
checkpointable data iterator and a step function; `run` does the rest:

    def step_fn(state, step):          # step: 0-based index of the step being made
        ...                            # one step of this job
        return StepResult(state, metrics, skipped)
    result = loop.run(workdir, LoopSettings.from_config(c), state, batches, step_fn)
    if not result.finished: ...        # stopped by SIGTERM; a rerun resumes

- Resume: the latest checkpoint in ``workdir/checkpoints`` replaces ``state`` and moves the
  iterator (a grain DatasetIterator, or anything with get_state/set_state) to where it stood.
- Metrics: each step's dict goes to ``metrics.jsonl`` and TensorBoard under step + 1 (written by
  process 0 of a multi-process run); a resumed run keeps the lines of the steps it resumes from
  and drops later ones.
- Non-finite updates: a step whose update was skipped (``skipped`` > 0) is logged but never
  checkpointed; ``max_nonfinite_in_row`` such steps in a row stop the run with
  FloatingPointError, leaving the last good checkpoint.
- Checkpoints every ``checkpoint_every`` steps, at the last step, and at SIGTERM (a TPU
  preemption): the current step is finished and saved, and `run` returns with finished=False.
  In a run over several processes a SIGTERM to any of them stops all after the same step.
"""

import dataclasses
import signal
from collections.abc import Callable
from typing import NamedTuple

from r1jax import metrics, multihost
from r1jax.checkpoint import Checkpointer


@dataclasses.dataclass(frozen=True)
class LoopSettings:
    steps: int
    checkpoint_every: int
    max_nonfinite_in_row: int

    def __post_init__(self):
        for name in ("steps", "checkpoint_every", "max_nonfinite_in_row"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    @classmethod
    def from_config(cls, c) -> "LoopSettings":
        return cls(int(c.steps), int(c.checkpoint_every), int(c.max_nonfinite_in_row))


class StepResult(NamedTuple):
    state: dict
    metrics: dict
    skipped: int  # updates of this step skipped as non-finite


@dataclasses.dataclass(frozen=True)
class RunResult:
    state: dict
    step: int  # steps completed
    finished: bool  # False: stopped by SIGTERM before the last step


def run(workdir: str, settings: LoopSettings, state: dict, data,
        step_fn: Callable[[dict, int], StepResult]) -> RunResult:
    """Run (or resume) ``settings.steps`` steps of ``step_fn``; see the module docstring."""
    ckpt = Checkpointer(workdir)
    state, start, meta = ckpt.resume(state, data)
    nonfinite = meta.get("nonfinite_in_row", 0)
    terminated = []
    previous = signal.signal(signal.SIGTERM, lambda *_: terminated.append(True))
    # Process 0 writes the logs; the others' metrics are the same (`multihost`).
    primary = multihost.is_primary()
    writer = (metrics.MetricsWriter(workdir, start_step=start + 1)  # keeps steps 1 .. start
              if primary else metrics.Discard())
    bar = metrics.progress(settings.steps, start) if primary else metrics.Discard()
    done = start
    try:
        for step in range(start, settings.steps):
            state, out, skipped = step_fn(state, step)
            done = step + 1
            writer.write(done, out)
            bar.update(done, out)
            if skipped:
                nonfinite += 1
                print(f"step {done}: {skipped} update(s) skipped (non-finite loss, gradient or "
                      f"params); {nonfinite} step(s) in a row")
                if nonfinite >= settings.max_nonfinite_in_row:
                    raise FloatingPointError(
                        f"{nonfinite} steps in a row had non-finite updates; stopping with the "
                        f"last good checkpoint in {workdir}/checkpoints intact")
                continue  # never checkpoint a step whose update failed
            nonfinite = 0
            if any(multihost.allgather(bool(terminated))):  # one stops, all stop
                terminated.append(True)
            if terminated or done % settings.checkpoint_every == 0 or done == settings.steps:
                ckpt.save(done, state, {"step": done, "nonfinite_in_row": nonfinite}, data)
            if terminated:
                print(f"SIGTERM: checkpointed step {done}, exiting")
                break
    finally:
        signal.signal(signal.SIGTERM, previous)
        closing_error = _close_each(ckpt, writer, bar)  # not raised over the loop's own error
    if closing_error:
        raise closing_error
    return RunResult(state, done, finished=done == settings.steps)


def _close_each(*resources) -> Exception | None:
    """Close every one of ``resources``, even after one fails (an unclosed checkpointer leaves
    threads that keep the process from exiting); the first failure, if any. The checkpointer
    comes first: its `CheckpointSaveError` says what a rerun resumes."""
    first = None
    for resource in resources:
        try:
            resource.close()
        except Exception as e:  # noqa: BLE001  (reported once all are closed)
            first = first or e
    return first
