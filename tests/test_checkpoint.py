"""The checkpointer on its own: bit-exact round trips (optimizer state included), another mesh,
max_to_keep, a kill in the middle of a save, damaged steps walked back over, a failed save."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from r1jax.checkpoint import Checkpointer, CheckpointSaveError, DamagedCheckpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.append(os.path.join(REPO, "tests"))  # --import-mode=importlib adds none
from faults import flip_four_bytes, largest_file  # noqa: E402


class Position:
    """A checkpointable data iterator that only remembers where it is."""

    def __init__(self, index=0):
        self.index = index

    def get_state(self):
        return {"index": self.index}

    def set_state(self, state):
        self.index = state["index"]


def bits(x) -> np.ndarray:
    x = np.asarray(x)
    return x.view(np.dtype(f"u{x.dtype.itemsize}"))


def assert_bitwise_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(bits(x), bits(y))


def trained_state(seed=0):
    """Params and an AdamW state after two updates: moments and count all non-trivial."""
    key = jax.random.key(seed)
    params = {"w": jax.random.normal(key, (16, 8)), "b": jnp.zeros((8,), jnp.bfloat16)}
    opt = optax.adamw(1e-2)
    opt_state = opt.init(params)
    for i in range(2):
        step_key = jax.random.fold_in(key, i)
        grads = jax.tree.map(lambda p, k=step_key: jax.random.normal(k, p.shape, p.dtype), params)
        updates, opt_state = opt.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
    return {"params": params, "opt_state": opt_state}


def saved(workdir, states: dict, **kwargs) -> Checkpointer:
    """A checkpointer of ``workdir`` that has saved ``states`` (step -> state), finished."""
    ckpt = Checkpointer(str(workdir), **kwargs)
    for step, state in states.items():
        ckpt.save(step, state, {"step": step}, Position(step * 10))
    ckpt.wait()
    return ckpt


def test_state_with_optimizer_moments_and_count_round_trips_bit_exactly(tmp_path):
    state = trained_state()
    assert int(state["opt_state"][0].count) == 2  # the counter is part of what must survive
    saved(tmp_path, {7: state}).close()
    like = jax.tree.map(jnp.zeros_like, state)
    restored, meta = Checkpointer(str(tmp_path)).restore(7, like)
    assert_bitwise_equal(restored, state)
    assert meta["step"] == 7 and meta["data"] == [{"index": 70}]


def test_restores_onto_another_mesh_with_the_new_shardings(tmp_path):
    devices = np.array(jax.devices()[:8])
    wide = NamedSharding(Mesh(devices, ("data",)), P("data"))
    state = {"w": jax.device_put(jnp.arange(64.0).reshape(8, 8), wide)}
    saved(tmp_path, {1: state}).close()
    square = NamedSharding(Mesh(devices.reshape(2, 4), ("a", "b")), P("b", "a"))
    like = {"w": jax.device_put(jnp.zeros((8, 8)), square)}
    restored, _ = Checkpointer(str(tmp_path)).restore(1, like)
    assert restored["w"].sharding == square
    np.testing.assert_array_equal(restored["w"], np.arange(64.0).reshape(8, 8))


def test_max_to_keep_keeps_the_newest_steps(tmp_path):
    ckpt = saved(tmp_path, {s: {"x": jnp.float32(s)} for s in range(1, 6)}, max_to_keep=2)
    assert ckpt.all_steps() == [4, 5]
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["4", "5"]
    ckpt.close()


KILLED_MID_SAVE = textwrap.dedent("""
    import os, signal, sys
    import jax, jax.numpy as jnp
    from r1jax.checkpoint import Checkpointer
    class Data:
        def get_state(self):
            return {"index": 10}
    ckpt = Checkpointer(sys.argv[1])
    ckpt.save(1, {"x": jnp.zeros((4096, 4096))}, {"step": 1}, Data())
    ckpt.wait()
    # 64 MB of random numbers take far longer to write than the kill takes to land: save()
    # returns once the arrays are copied to the host, and the process dies while orbax writes.
    ckpt.save(2, {"x": jax.random.normal(jax.random.key(0), (4096, 4096))}, {"step": 2}, Data())
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_a_kill_in_the_middle_of_a_save_leaves_the_previous_step(tmp_path):
    env = {**os.environ, "PYTHONPATH": REPO, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", KILLED_MID_SAVE, str(tmp_path)], env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == -signal.SIGKILL, result.stderr
    partial = [name for name in os.listdir(tmp_path / "checkpoints") if name.startswith("2.")]
    assert partial, "step 2's save had finished before the kill: the test proves nothing"
    ckpt = Checkpointer(str(tmp_path))
    assert ckpt.all_steps() == [1]
    data = Position()
    state, step, _ = ckpt.resume({"x": jnp.ones((4096, 4096))}, data)
    assert step == 1 and data.index == 10 and not np.asarray(state["x"]).any()
    ckpt.save(2, {"x": jnp.ones((2, 2))}, {"step": 2})  # the step number is free to save again
    ckpt.close()
    assert Checkpointer(str(tmp_path)).all_steps() == [1, 2]




def truncate_half(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def empty(path):
    open(path, "wb").close()


def zero(path):
    size = os.path.getsize(path)
    with open(path, "wb") as f:
        f.write(bytes(size))




def break_json(path):
    with open(path, "w") as f:
        f.write("{not json")


DAMAGE = {  # name -> (what to damage in a step folder, how)
    "truncated data file": (lambda step: largest_file(step / "state"), truncate_half),
    "emptied data file": (lambda step: largest_file(step / "state"), empty),
    "zeroed data file": (lambda step: largest_file(step / "state"), zero),
    "four bytes flipped": (lambda step: largest_file(step / "state"), flip_four_bytes),
    "state/ deleted": (lambda step: step / "state", shutil.rmtree),
    "broken array metadata": (lambda step: step / "state" / "_METADATA", break_json),
    "broken meta": (lambda step: step / "meta" / "metadata", break_json),
    # Arrays that read without error but are not the ones saved: only the checksums tell.
    "another step's arrays": (lambda step: step, lambda folder: shutil.copytree(
        folder.parent / "1" / "state", folder / "state", dirs_exist_ok=True)),
}


def two_steps(workdir):
    """Steps 1 and 2 of a state large enough that its data has a file of its own."""
    states = {s: {"w": jax.random.normal(jax.random.key(s), (64, 64)),
                  "count": jnp.int32(s)} for s in (1, 2)}
    saved(workdir, states).close()
    return states


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_newest_step_is_skipped_and_moved_aside(tmp_path, capsys, damage):
    states = two_steps(tmp_path)
    where, how = DAMAGE[damage]
    how(where(tmp_path / "checkpoints" / "2"))
    ckpt = Checkpointer(str(tmp_path))
    data = Position()
    state, step, _ = ckpt.resume(jax.tree.map(jnp.zeros_like, states[1]), data)
    assert step == 1 and data.index == 10
    assert_bitwise_equal(state, states[1])
    out = capsys.readouterr().out
    assert "skipping checkpoint step 2" in out and "is damaged" in out
    assert os.listdir(tmp_path / "damaged_checkpoints") == ["2"]  # kept for inspection
    ckpt.save(2, states[2], {"step": 2}, data)  # the run can save step 2 again
    ckpt.close()
    assert Checkpointer(str(tmp_path)).all_steps() == [1, 2]


def test_a_step_holding_nan_is_skipped(tmp_path, capsys):
    states = {1: {"w": jnp.ones((4,))}, 2: {"w": jnp.array([1.0, jnp.nan, 1.0, 1.0])}}
    saved(tmp_path, states).close()
    state, step, _ = Checkpointer(str(tmp_path)).resume({"w": jnp.zeros((4,))}, Position())
    assert step == 1 and np.asarray(state["w"]).tolist() == [1, 1, 1, 1]
    assert "['w'] holds NaN or infinity" in capsys.readouterr().out


def test_when_no_step_restores_it_says_so_and_moves_nothing(tmp_path):
    states = two_steps(tmp_path)
    for step in ("1", "2"):
        flip_four_bytes(largest_file(tmp_path / "checkpoints" / step / "state"))
    before = sorted(os.listdir(tmp_path / "checkpoints"))
    with pytest.raises(DamagedCheckpoint, match="no checkpoint in .* restores .*step 2.*step 1"):
        Checkpointer(str(tmp_path)).resume(states[1], Position())
    assert sorted(os.listdir(tmp_path / "checkpoints")) == before
    assert not (tmp_path / "damaged_checkpoints").exists()


def test_restore_params_refuses_a_damaged_step(tmp_path):
    state = {"params": {"w": jax.random.normal(jax.random.key(0), (64, 64))}}
    saved(tmp_path, {1: state}).close()
    flip_four_bytes(largest_file(tmp_path / "checkpoints" / "1" / "state"))
    abstract = {"w": jax.ShapeDtypeStruct((64, 64), jnp.float32)}
    with pytest.raises(DamagedCheckpoint, match="step 1 .* is damaged"):
        Checkpointer(str(tmp_path)).restore_params(abstract)


def test_a_save_that_fills_the_disk_is_one_error_and_the_previous_step_resumes(small_disk):
    small = {"w": jnp.zeros((16,))}
    ckpt = saved(small_disk, {1: small})
    big = {"w": jax.random.normal(jax.random.key(0), (512, 1024))}  # 2 MiB, incompressible
    with pytest.raises(CheckpointSaveError,
                       match=r"saving step 2 .* failed \(No space left on device\); the last "
                             r"complete checkpoint is step 1"):
        ckpt.save(2, big, {"step": 2}, Position())
        ckpt.wait()  # an asynchronous save's failure surfaces here at the latest
    ckpt.close()
    _, step, _ = Checkpointer(str(small_disk)).resume(small, Position())
    assert step == 1
