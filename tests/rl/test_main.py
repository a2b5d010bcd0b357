"""The command line: config overrides, unknown keys, SIGKILL + restart, SIGTERM."""

import os
import re
import signal
import subprocess
import sys
import time

from r1jax import main as r1jax_main
from r1jax import mesh, metrics

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMOKE = os.path.join(REPO, "experiments", "r1_zero_toy.py") + ":smoke"
TIMING = ("time/", "throughput/")
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}  # --cpu_devices' default, as run


def main(workdir, *overrides):
    return [sys.executable, "-m", "r1jax.main", f"--config={SMOKE}", f"--workdir={workdir}",
            "--config.rl.eval_every=0", *overrides]  # evaluation has tests of its own


def steps_logged(workdir):
    path = os.path.join(workdir, "metrics.jsonl")
    return len(metrics.read_metrics(path)) if os.path.exists(path) else 0


def run_until(workdir, n_steps, sig, *overrides):
    """Start a run, send ``sig`` once ``n_steps`` steps are logged; return its exit code."""
    proc = subprocess.Popen(main(workdir, *overrides), env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while steps_logged(workdir) < n_steps and proc.poll() is None:
        assert time.monotonic() < deadline, "the run did not log steps in time"
        time.sleep(0.05)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    return proc.returncode, out


def comparable(history):
    return [{k: v for k, v in h.items() if not k.startswith(TIMING)} for h in history]


def test_an_unknown_config_key_is_an_error_naming_it(tmp_path):
    result = subprocess.run(main(tmp_path, "--config.rl.lrr=1e-6"), env=ENV, text=True,
                            capture_output=True, timeout=120)
    assert result.returncode != 0
    assert "lrr" in result.stderr and "Traceback" not in result.stderr


def test_cpu_devices_runs_data_parallel_over_that_many_cpu_devices(tmp_path):
    result = subprocess.run(main(tmp_path, "--cpu_devices=2", "--config.rl.steps=2"), env=ENV,
                            text=True, capture_output=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "mesh {'data': 2, 'fsdp': 1, 'tensor': 1} over 2 cpu device(s)" in result.stdout
    assert steps_logged(tmp_path) == 2
    bad = subprocess.run(main(tmp_path / "bad", "--cpu_devices=0"), env=ENV, text=True,
                         capture_output=True, timeout=120, check=False)
    assert bad.returncode != 0
    assert "--cpu_devices must be at least 1" in bad.stderr and "Traceback" not in bad.stderr


def test_the_default_cpu_devices_are_a_power_of_two_up_to_the_cores_and_at_most_eight(
        monkeypatch):
    for cores, devices in ((1, 1), (2, 2), (3, 2), (6, 4), (8, 8), (64, 8)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda _, n=cores: set(range(n)))
        assert mesh.default_cpu_devices() == devices, cores


def test_sigkill_then_restart_matches_an_uninterrupted_run(tmp_path):
    overrides = ("--config.rl.steps=6", "--config.rl.checkpoint_every=2")
    subprocess.run(main(tmp_path / "straight", *overrides), env=ENV, check=True,
                   capture_output=True, timeout=300)
    # Step 6 writes samples/step_000006.jsonl (checkpoint_every=2); made a FIFO that nobody
    # reads, the write blocks, so the kill lands after step 5 is logged and before step 6 is,
    # however fast the machine. By then step 2's checkpoint is complete (step 4's save waited
    # for it; step 4's own may still be in flight), so the restart resumes, from step 2 or 4.
    blocker = tmp_path / "killed" / "samples" / "step_000006.jsonl"
    blocker.parent.mkdir(parents=True)
    os.mkfifo(blocker)
    code, _ = run_until(tmp_path / "killed", 5, signal.SIGKILL, *overrides)
    assert code == -signal.SIGKILL
    assert steps_logged(tmp_path / "killed") == 5
    blocker.unlink()
    restart = subprocess.run(main(tmp_path / "killed", *overrides), env=ENV, check=True,
                             capture_output=True, text=True, timeout=300)
    assert re.search(r"resumed at step [24] from", restart.stdout), restart.stdout
    straight = metrics.read_metrics(tmp_path / "straight" / "metrics.jsonl")
    resumed = metrics.read_metrics(tmp_path / "killed" / "metrics.jsonl")
    assert [h["step"] for h in resumed] == list(range(1, 7))
    assert comparable(resumed) == comparable(straight)  # bitwise: same floats in the JSON


def test_sigterm_checkpoints_the_current_step_and_exits_with_the_stopped_status(tmp_path):
    code, out = run_until(tmp_path, 1, signal.SIGTERM, "--config.rl.steps=50",
                          "--config.rl.checkpoint_every=50")
    assert code == r1jax_main.STOPPED_EXIT, out  # not 0: a launcher must rerun it
    done = steps_logged(tmp_path)
    assert 1 <= done < 50
    assert sorted(os.listdir(tmp_path / "checkpoints"), key=int)[-1] == str(done)
    assert "plots:" not in out  # the report waits for the run to finish
