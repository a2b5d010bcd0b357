"""r1jax.multihost: its helpers in this process (eight CPU devices, one process: each is the
identity there), and a run over two processes on localhost (two CPU devices each, joined by
jax.distributed with gloo collectives) against one process with four devices.

The smoke RL config learns nothing from a random model (every reward 0, every advantage 0), so
the runs here stop each completion at its first token holding an "e" and add DAPO's soft
overlong penalty: lengths differ, rewards differ, and every update moves the policy.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from r1jax import metrics, multihost
from r1jax.mesh import make_mesh

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMOKE = os.path.join(REPO, "experiments", "r1_zero_toy.py") + ":smoke"
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
    """The runs here compile the same programs: they share JAX's persistent compilation cache."""
    ENV.update(JAX_COMPILATION_CACHE_DIR=str(tmp_path_factory.mktemp("jax_cache")),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
TIMING = ("time/", "throughput/", "eval/time_s", "eval/problems_per_s", "eval/tokens_per_s")
LEARNS = ("--config.rl.prompts_per_step=4", "--config.rl.stop_strings=('e',)",
          "--config.rl.overlong_cache_len=6", "--config.reward_workers=1")
NO_EVAL = "--config.rl.eval_every=0"  # no evaluation of the base and final models either


def test_one_process_holds_every_row_and_the_helpers_are_identities():
    mesh = make_mesh(data=4, fsdp=2)
    assert multihost.row_block(mesh, 16) == (0, 1) and multihost.row_slice(mesh, 16) == slice(0, 16)
    assert multihost.row_block(None, 3) == (0, 1)
    rows = np.arange(16 * 3, dtype=np.float32).reshape(16, 3)
    placed = multihost.put_rows(mesh, {"x": rows})["x"]
    assert len({shard.index[0].start for shard in placed.addressable_shards}) == 8  # 8 ways
    np.testing.assert_array_equal(multihost.local_rows(placed), rows)
    np.testing.assert_array_equal(multihost.fetch(placed), rows)
    assert multihost.allgather({"a": 1}) == [{"a": 1}]
    assert multihost.gather_blocks(mesh, 16, "part") == ["part"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(workdir, devices, *flags):
    return [sys.executable, "-m", "r1jax.main", f"--config={SMOKE}", f"--workdir={workdir}",
            f"--cpu_devices={devices}", *LEARNS, *flags]


def start_processes(workdir, *overrides, heartbeat_s=100):
    """Two processes of one run, two CPU devices each; their output goes to workdir/../pN.log."""
    port = free_port()
    procs = []
    for i in range(2):
        log = open(f"{workdir}.p{i}.log", "w")
        procs.append(subprocess.Popen(
            command(workdir, 2, f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                    f"--process_id={i}", f"--heartbeat_timeout_s={heartbeat_s}", *overrides),
            env=ENV, stdout=log, stderr=subprocess.STDOUT))
    return procs


def output(workdir, i):
    with open(f"{workdir}.p{i}.log") as f:
        return f.read()


def run_two_processes(workdir, *overrides):
    procs = start_processes(workdir, *overrides)
    codes = [p.wait(timeout=600) for p in procs]
    assert codes == [0, 0], output(workdir, 0)[-3000:] + output(workdir, 1)[-3000:]


def history(workdir):
    return [{k: v for k, v in h.items() if k not in TIMING and not k.startswith(TIMING)}
            for h in metrics.read_metrics(os.path.join(workdir, "metrics.jsonl"))]


def test_two_processes_match_one_and_resume(tmp_path):
    one = tmp_path / "one"
    subprocess.run(command(one, 4, "--config.rl.steps=3"), env=ENV, check=True, timeout=600,
                   capture_output=True)
    two = tmp_path / "two"
    run_two_processes(two, "--config.rl.steps=2", NO_EVAL)  # checkpoints step 2 and ends
    assert sorted(os.listdir(two / "checkpoints")) == ["2"]
    run_two_processes(two, "--config.rl.steps=3")  # both processes resume from step 2
    assert "resumed at step 2" in output(two, 0) and "resumed at step 2" in output(two, 1)

    straight, resumed = history(one), history(two)
    assert [h["step"] for h in resumed] == [1, 2, 3]  # one line per step: process 0 writes
    assert resumed[0]["grad_norm"] > 0 and resumed[0]["adv/abs_mean"] > 0  # it learns
    assert "eval/pass@1" in resumed[2]  # evaluation at step 3, across the processes
    for a, b in zip(straight, resumed):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_allclose(b[key], a[key], rtol=1e-6, atol=1e-6, err_msg=key)
    # The same rollouts: what the sampler drew does not depend on how the rows are placed.
    for key in ("length/mean", "reflect/rate", "adv/abs_mean", "eval/length/mean"):
        assert [h.get(key) for h in resumed] == [h.get(key) for h in straight], key
    # Every process's data iterator state is in the checkpoint, which process 0 wrote once.
    meta = json.loads((two / "checkpoints" / "3" / "meta" / "metadata").read_text())
    assert len(meta["data"]) == 2
    assert (two / "hf" / "model.safetensors").is_file() and (two / "results.md").is_file()


def test_a_killed_process_ends_the_other_within_the_heartbeat_timeout(tmp_path):
    workdir = tmp_path / "run"
    procs = start_processes(workdir, "--config.rl.steps=1000", NO_EVAL, heartbeat_s=5)
    deadline = time.monotonic() + 300
    while not (workdir / "metrics.jsonl").exists() or not metrics.read_metrics(
            workdir / "metrics.jsonl"):
        assert time.monotonic() < deadline and procs[0].poll() is None, output(workdir, 0)
        time.sleep(0.1)
    procs[1].send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    code = procs[0].wait(timeout=120)
    assert time.monotonic() - killed_at < 60
    assert code != 0
    assert "another task died" in output(workdir, 0) or "unhealthy" in output(workdir, 0)
