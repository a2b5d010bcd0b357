"""Checkpoints through orbax: the array state (policy, reference, optimizer) and a JSON part.

The JSON part holds what is not an array: the step, counters, and the data iterator's state of
every process (each reads its own rows; a run resumes with as many processes as it had). Saves
are asynchronous (training continues while orbax writes); a save is only visible once complete,
so a run killed mid-save restarts from the previous checkpoint. In a run over several processes
every process saves and restores together (orbax writes each array's shards from the process
that holds them), into one workdir they all see: a ``gs://`` path or a shared filesystem.
"""

import jax
import orbax.checkpoint as ocp
from etils import epath

from r1jax import multihost


class Checkpointer:
    """Saves and restores ``(state, meta)`` pairs under ``workdir/checkpoints/<step>``."""

    def __init__(self, workdir: str, max_to_keep: int = 2, async_save: bool = True):
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                               enable_async_checkpointing=async_save)
        self._manager = ocp.CheckpointManager(
            epath.Path(workdir).absolute() / "checkpoints", options=options)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """The steps of the complete checkpoints, in order."""
        return sorted(self._manager.all_steps())

    def save(self, step: int, state, meta: dict, iterator=None) -> None:
        """Save ``state`` and ``meta`` as step ``step``, with every process's ``iterator`` state
        (a grain iterator, or anything with get_state/set_state) when given."""
        if iterator is not None:
            meta = {**meta, "data": multihost.allgather(iterator.get_state())}
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

    def restore(self, step: int, like_state):
        """(state, meta) of ``step``; arrays get the shapes, dtypes and shardings of ``like_state``."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like_state)
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        return restored["state"], restored["meta"]

    def restore_params(self, abstract_params, step: int | None = None):
        """Only the policy params of checkpoint ``step`` (default: the latest), placed as the
        ``jax.ShapeDtypeStruct`` tree ``abstract_params`` says; nothing else is read."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"{self._manager.directory} holds no complete checkpoint")
        restored = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
            item={"params": abstract_params}, partial_restore=True,
            restore_args={"params": ocp.checkpoint_utils.construct_restore_args(abstract_params)})))
        return restored["state"]["params"]

    def resume(self, like_state, iterator):
        """(state, step, meta) of the latest checkpoint, with ``iterator`` (a grain iterator)
        moved to where that run's data stood; (like_state, 0, {}) when there is none."""
        step = self.latest_step()
        if step is None:
            return like_state, 0, {}
        state, meta = self.restore(step, like_state)
        if len(meta["data"]) != jax.process_count():
            raise ValueError(f"step {step} in {self._manager.directory} was saved by "
                             f"{len(meta['data'])} process(es), whose data iterators it holds; "
                             f"resume it with as many, not {jax.process_count()}")
        iterator.set_state(meta["data"][jax.process_index()])
        print(f"resumed at step {step} from {self._manager.directory}")
        return state, step, meta

    def wait(self) -> None:
        """Block until pending asynchronous saves are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
