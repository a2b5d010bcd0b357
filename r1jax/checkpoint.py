"""Checkpoints through orbax: the array state (policy, reference, optimizer) and a JSON part.

The JSON part holds what is not an array: the step, counters, the data iterator's state of
every process (each reads its own rows; a run resumes with as many processes as it had), and a
checksum of every saved array. Saves are asynchronous (training continues while orbax writes);
a save is only visible once complete, so a run killed mid-save restarts from the previous
checkpoint. In a run over several processes every process saves and restores together (orbax
writes each array's shards from the process that holds them), into one workdir they all see: a
``gs://`` path or a shared filesystem.

Damage is found, not trusted. A restored step must read without error, match the checksums
saved with it (orbax's files carry none of their own over the array data) and hold only finite
numbers; `resume` walks back from the newest step to the newest one that passes, says which
steps it skipped and why, and moves them to ``workdir/damaged_checkpoints`` (kept for
inspection; the run will save those step numbers again). When no step passes it stops with one
sentence and moves nothing. A save that fails (a full disk, a permission) stops the run with the
cause when it is found (at the next save, or at the end), as `CheckpointSaveError`; the steps
saved before it stay, so the same command resumes from the last of them.
"""

import logging
import os
import re
import sys

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from etils import epath

from r1jax import multihost


class DamagedCheckpoint(ValueError):
    """A checkpoint step that does not read back as it was saved."""


class CheckpointSaveError(OSError):
    """A save that did not reach the disk; the message says why and what a rerun resumes."""


class _QuietOrbax(logging.Filter):
    """Drops orbax's own error logs (each failed save logs a traceback from every thread that
    saw it, and asyncio one for each of its write tasks that failed after the first): every
    failure also reaches `Checkpointer` as an exception, reported in one sentence."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR or not (
            "/orbax/" in record.pathname or "/orbax/" in record.getMessage())


for _logger in ("absl", "asyncio"):
    logging.getLogger(_logger).addFilter(_QuietOrbax())


def _quiet_closed_loop(hook):
    """``hook`` (a sys.unraisablehook) less the reports of tensorstore's writes that finish
    after orbax gave up a failed save and closed its event loop (each tries to wake the closed
    loop: "Event loop is closed"); the failure itself is reported once, by `Checkpointer`."""

    def filtered(unraisable):
        error, trace = unraisable.exc_value, unraisable.exc_traceback
        if not (isinstance(error, RuntimeError) and str(error) == "Event loop is closed"
                and trace is not None and trace.tb_frame.f_code.co_name == "call_soon_threadsafe"):
            hook(unraisable)

    return filtered


sys.unraisablehook = _quiet_closed_loop(sys.unraisablehook)

_UNSIGNED = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}


def _checksum(x: jax.Array) -> jax.Array:
    """The sum of the array's bit patterns, the i-th weighted by 2i + 1, modulo 2**32. A change
    of any one element changes it (an odd weight is invertible modulo 2**32), and integer sums
    are exact in any order, so it is the same however the array is sharded."""
    bits = jax.lax.bitcast_convert_type(x, _UNSIGNED[x.dtype.itemsize]).astype(jnp.uint32)
    weights = jnp.arange(bits.size, dtype=jnp.uint32) * 2 + 1
    return jnp.sum(bits.reshape(-1) * weights, dtype=jnp.uint32)


@jax.jit
def _fingerprint(tree):
    """(checksum, finite) of every leaf: whether a floating leaf holds only finite numbers."""
    def one(x):
        finite = jnp.all(jnp.isfinite(x)) if jnp.issubdtype(x.dtype, jnp.inexact) else True
        return _checksum(x), finite
    return jax.tree.map(one, tree)


def _fingerprints(tree) -> dict[str, tuple[str, int, bool]]:
    """{leaf path: (dtype, checksum, finite)} of an array tree, the same on every process."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    prints = treedef.flatten_up_to(multihost.fetch(_fingerprint(tree)))
    return {jax.tree_util.keystr(path): (str(leaf.dtype), int(checksum), bool(finite))
            for (path, leaf), (checksum, finite) in zip(leaves, prints)}


def _problem(tree, saved: dict) -> str | None:
    """What is wrong with restored arrays ``tree`` against the checksums ``saved`` with them
    (leaf path -> [dtype, checksum]; a leaf restored in another dtype is not compared), or None.
    A checkpoint written before checksums existed has none and is checked for finiteness only."""
    for path, (dtype, checksum, finite) in _fingerprints(tree).items():
        if path in saved and saved[path][0] == dtype and saved[path][1] != checksum:
            return f"{path} differs from what was saved (checksum)"
        if not finite:
            return f"{path} holds NaN or infinity"
    return None


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def _cause(error: Exception) -> str:
    """The operating system's words for a failed write, when the error carries its code."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    code = re.search(r"os_error_code='?(\d+)", str(error))
    return os.strerror(int(code.group(1))) if code else _first_line(error)


def _agreed(problem: str | None) -> str | None:
    """The first process's problem, when any process has one: every process skips together."""
    return next((p for p in multihost.allgather(problem) if p), None)


class Checkpointer:
    """Saves and restores ``(state, meta)`` pairs under ``workdir/checkpoints/<step>``."""

    def __init__(self, workdir: str, max_to_keep: int = 2, async_save: bool = True):
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                               enable_async_checkpointing=async_save)
        self._workdir = epath.Path(workdir).absolute()
        self._manager = ocp.CheckpointManager(self._workdir / "checkpoints", options=options)
        self._saving = None  # the step of the save in flight, until it is known to be complete

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """The steps of the complete checkpoints, in order."""
        return sorted(self._manager.all_steps())

    def save(self, step: int, state, meta: dict, iterator=None) -> None:
        """Save ``state`` and ``meta`` as step ``step``, with every process's ``iterator`` state
        (a grain iterator, or anything with get_state/set_state) when given. Raises
        `CheckpointSaveError` when this save, or the one before it, did not reach the disk."""
        if iterator is not None:
            meta = {**meta, "data": multihost.allgather(iterator.get_state())}
        meta = {**meta, "checksums": {path: [dtype, checksum] for path, (dtype, checksum, _)
                                      in _fingerprints(state).items()}}
        self._finish_saving()
        self._saving = step
        try:
            self._manager.save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)
        except Exception as e:  # orbax reports a write it cannot start as ValueError or OSError
            self._failed(e)

    def _finish_saving(self) -> None:
        """Wait for the save in flight; `CheckpointSaveError` if it failed."""
        try:
            self._manager.wait_until_finished()
        except Exception as e:  # the save thread's error: tensorstore's ValueError, OSError
            self._failed(e)
        self._saving = None

    def _failed(self, error: Exception):
        step, self._saving = self._saving, None
        self._manager.reload()
        last = self.latest_step()
        raise CheckpointSaveError(
            f"saving step {step} to {self._manager.directory} failed ({_cause(error)}); "
            f"{f'the last complete checkpoint is step {last}' if last else 'no step is saved'}: "
            f"fix the cause and rerun the same command to resume") from error

    def restore(self, step: int, like_state):
        """(state, meta) of ``step``; arrays get the shapes, dtypes and shardings of
        ``like_state``. `DamagedCheckpoint` when the step does not read, or reads other arrays
        than were saved, or non-finite ones."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like_state)
        restored = self._read_intact(step, ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        return restored["state"], restored["meta"]

    def _read_intact(self, step: int, args):
        """What orbax restores of ``step`` with ``args`` (a state and its meta), once every
        process has read it and its arrays match their checksums and are finite; else
        `DamagedCheckpoint` on every process, saying why."""
        try:
            restored, problem = self._manager.restore(step, args=args), None
        except Exception as e:  # a damaged step raises whatever its first unreadable file does
            restored, problem = None, _first_line(e)
        problem = _agreed(problem) or _agreed(_problem(restored["state"],
                                                       restored["meta"].get("checksums", {})))
        if problem:
            raise DamagedCheckpoint(f"step {step} in {self._manager.directory} is damaged: "
                                    f"{problem}")
        return restored

    def restore_params(self, abstract_params, step: int | None = None):
        """Only the policy params of checkpoint ``step`` (default: the latest), placed as the
        ``jax.ShapeDtypeStruct`` tree ``abstract_params`` says, and checked as `restore`
        checks; no other array is read."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"{self._manager.directory} holds no complete checkpoint")
        restored = self._read_intact(step, ocp.args.Composite(
            state=ocp.args.PyTreeRestore(
                item={"params": abstract_params}, partial_restore=True,
                restore_args={"params": ocp.checkpoint_utils.construct_restore_args(
                    abstract_params)}),
            meta=ocp.args.JsonRestore()))
        return restored["state"]["params"]

    def resume(self, like_state, iterator):
        """(state, step, meta) of the newest checkpoint that restores intact (`restore`), with
        ``iterator`` (a grain iterator) moved to where that run's data stood; (like_state, 0, {})
        when there is none. Damaged newer steps are reported and moved aside; when every step is
        damaged, `DamagedCheckpoint` says so and nothing is moved."""
        skipped = []
        for step in reversed(self.all_steps()):
            try:
                state, meta = self.restore(step, like_state)
            except DamagedCheckpoint as e:
                print(f"skipping checkpoint {e}")
                skipped.append((step, str(e)))
                continue
            if len(meta["data"]) != jax.process_count():
                raise ValueError(f"step {step} in {self._manager.directory} was saved by "
                                 f"{len(meta['data'])} process(es), whose data iterators it "
                                 f"holds; resume it with as many, not {jax.process_count()}")
            self._set_aside([s for s, _ in skipped])
            iterator.set_state(meta["data"][jax.process_index()])
            print(f"resumed at step {step} from {self._manager.directory}")
            return state, step, meta
        if skipped:
            raise DamagedCheckpoint(
                f"no checkpoint in {self._manager.directory} restores ("
                f"{'; '.join(why for _, why in skipped)}); nothing was moved or deleted: repair "
                f"or remove them to start again")
        return like_state, 0, {}

    def _set_aside(self, steps: list[int]) -> None:
        """Move damaged ``steps`` to workdir/damaged_checkpoints, so that the run can save those
        step numbers again and the damaged files stay for inspection."""
        if not steps:
            return
        if multihost.is_primary():
            aside = self._workdir / "damaged_checkpoints"
            aside.mkdir(parents=True, exist_ok=True)
            for step in steps:
                (self._manager.directory / str(step)).rename(aside / str(step))
                print(f"moved damaged step {step} to {aside / str(step)}")
        multihost.sync("damaged checkpoints moved")
        self._manager.reload()

    def wait(self) -> None:
        """Block until pending asynchronous saves are on disk; `CheckpointSaveError` if one
        failed."""
        self._finish_saving()

    def close(self) -> None:
        """Finish pending saves (`CheckpointSaveError` if one failed) and release the manager."""
        try:
            if self._saving is not None:  # None: no save since the last one known complete
                self._finish_saving()
        finally:
            self._manager.close()
