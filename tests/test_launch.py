"""launch/tpu.py: the exact gcloud commands, --dry_run, the preemption loop, bad arguments.

There is no gcloud here: the commands are checked as argv lists, and the loop runs against a fake
runner that answers the state queries from a script.
"""

import os
import shlex
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root
from launch import tpu as launch  # noqa: E402

GCLOUD = ["gcloud", "compute", "tpus"]
V5E = launch.Tpu("r1-v5e", "us-west4-a")
V5P = launch.Tpu("r1-v5p", "us-east5-a", project="my-project")


def test_create_v5e_8_spot():
    assert launch.create_commands(V5E, "v5litepod-8", spot=True) == [
        GCLOUD + ["queued-resources", "create", "r1-v5e", "--zone=us-west4-a", "--node-id=r1-v5e",
                  "--accelerator-type=v5litepod-8", "--runtime-version=v2-alpha-tpuv5-lite",
                  "--spot"]]


def test_create_v5p_32_on_demand_with_project():
    assert launch.create_commands(V5P, "v5p-32") == [
        GCLOUD + ["queued-resources", "create", "r1-v5p", "--zone=us-east5-a",
                  "--project=my-project", "--node-id=r1-v5p", "--accelerator-type=v5p-32",
                  "--runtime-version=v2-alpha-tpuv5"]]


@pytest.mark.parametrize("accelerator, runtime", [
    ("v4-8", "tpu-ubuntu2204-base"), ("v5litepod-16", "v2-alpha-tpuv5-lite"),
    ("v5p-8", "v2-alpha-tpuv5"), ("v6e-64", "v2-alpha-tpuv6e")])
def test_runtime_version_per_generation(accelerator, runtime):
    assert launch.runtime_version(accelerator) == runtime


def test_a_given_runtime_version_wins():
    [argv] = launch.create_commands(V5E, "v6e-8", runtime="v2-alpha-tpuv6e-custom")
    assert "--runtime-version=v2-alpha-tpuv6e-custom" in argv


def test_setup_ships_one_commit_to_every_worker():
    assert launch.setup_commands(V5P, "abc123", archive="/tmp/r.tar.gz") == [
        ["git", "archive", "--format=tar.gz", "--output=/tmp/r.tar.gz", "abc123"],
        GCLOUD + ["tpu-vm", "scp", "/tmp/r.tar.gz", "r1-v5p:r1jax.tar.gz", "--zone=us-east5-a",
                  "--project=my-project", "--worker=all"],
        GCLOUD + ["tpu-vm", "ssh", "r1-v5p", "--zone=us-east5-a", "--project=my-project",
                  "--worker=all", "--command",
                  "rm -rf r1jax && mkdir r1jax && tar -xzf r1jax.tar.gz -C r1jax && cd r1jax && "
                  'python3 -m pip install -e ".[tpu]"']]


def test_run_passes_config_workdir_and_overrides_through():
    overrides = ["--config.rl.lr=1e-4", "--config.rl.steps=20",
                 "--config.data.sources.math.path=/data/my math"]
    [argv] = launch.run_commands(V5P, "experiments/r1_zero_qwen2_5_math_1_5b.py",
                                 "gs://bucket/runs/qwen", overrides)
    assert argv == GCLOUD + [
        "tpu-vm", "ssh", "r1-v5p", "--zone=us-east5-a", "--project=my-project", "--worker=all",
        "--command",
        "cd r1jax && python3 -m r1jax.main --config=experiments/r1_zero_qwen2_5_math_1_5b.py "
        "--workdir=gs://bucket/runs/qwen --config.rl.lr=1e-4 --config.rl.steps=20 "
        "'--config.data.sources.math.path=/data/my math' > ~/r1jax.log 2>&1"]
    # The remote shell sees exactly the job's argv (the space survives the quoting).
    job = shlex.split(argv[-1].split(" > ")[0].removeprefix("cd r1jax && "))
    assert job[3:] == ["--config=experiments/r1_zero_qwen2_5_math_1_5b.py",
                       "--workdir=gs://bucket/runs/qwen", *overrides]


def test_logs_and_delete():
    assert launch.logs_commands(V5E) == [GCLOUD + [
        "tpu-vm", "ssh", "r1-v5e", "--zone=us-west4-a", "--worker=0", "--command",
        "cat ~/r1jax.log"]]
    assert launch.logs_commands(V5E, worker=3, follow=True)[0][-3:] == [
        "--worker=3", "--command", "tail -F ~/r1jax.log"]
    assert launch.delete_commands(V5E) == [GCLOUD + [
        "queued-resources", "delete", "r1-v5e", "--zone=us-west4-a", "--force", "--quiet"]]


@pytest.fixture
def no_subprocess(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"--dry_run ran a command: {args}")
    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)


def test_dry_run_up_prints_every_command_and_runs_nothing(no_subprocess, capsys):
    argv = ["up", "--name=r1-v5e", "--zone=us-west4-a", "--accelerator=v5litepod-8", "--spot",
            "--config=experiments/aha_small.py:smoke", "--workdir=gs://bucket/aha", "--dry_run",
            "--", "--config.rl.lr=1e-4", "--config.seed=3"]
    assert launch.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    archive = os.path.join(tempfile.gettempdir(), "r1jax-r1-v5e.tar.gz")
    expected = (launch.create_commands(V5E, "v5litepod-8", spot=True)
                + launch.state_commands(V5E)[:1]
                + launch.setup_commands(V5E, "HEAD", archive)
                + launch.run_commands(V5E, "experiments/aha_small.py:smoke", "gs://bucket/aha",
                                      ["--config.rl.lr=1e-4", "--config.seed=3"]))
    assert lines == [shlex.join(c) for c in expected]
    assert [shlex.split(line) for line in lines] == expected  # pasteable: one command a line


@pytest.mark.parametrize("subcommand, expected", [
    (["delete"], launch.delete_commands(V5E)),
    (["logs", "--worker=1"], launch.logs_commands(V5E, worker=1)),
    (["create", "--accelerator=v5litepod-8"],
     launch.create_commands(V5E, "v5litepod-8") + launch.state_commands(V5E)[:1])])
def test_dry_run_other_subcommands(no_subprocess, capsys, subcommand, expected):
    argv = [subcommand[0], "--name=r1-v5e", "--zone=us-west4-a", "--dry_run", *subcommand[1:]]
    assert launch.main(argv) == 0
    assert capsys.readouterr().out.splitlines() == [shlex.join(c) for c in expected]


class FakeGcloud:
    """Records every command; answers state queries from per-attempt scripts."""

    def __init__(self, run_status, lost_after_run, late=0):
        self.calls, self.attempt, self.ran, self.checks = [], 0, False, 0
        self.run_status, self.lost_after_run = run_status, lost_after_run
        self.late = late  # state checks after the run that still see a healthy slice

    def __call__(self, argv, capture=False):
        self.calls.append(argv)
        words = " ".join(argv)
        if "queued-resources create" in words:
            self.attempt += 1
            self.ran, self.checks = False, 0
        if "r1jax.main" in words:
            self.ran = True
            return self.run_status[self.attempt - 1], ""
        if self.ran and "queued-resources describe" in words:
            self.checks += 1
        lost = self.ran and self.lost_after_run[self.attempt - 1] and self.checks > self.late
        if "queued-resources describe" in words:
            return 0, "SUSPENDED" if lost else "ACTIVE"
        if "tpu-vm describe" in words:
            return 0, "PREEMPTED" if lost else "READY"
        return 0, ""

    def count(self, text):
        return sum(text in " ".join(argv) for argv in self.calls)


def _up(fake, max_attempts=3):
    return launch.up(V5E, "v5litepod-8", "experiments/aha_small.py", "gs://bucket/aha",
                     ["--config.rl.lr=1e-4"], spot=True, archive="/tmp/r.tar.gz",
                     max_attempts=max_attempts, runner=fake, sleep=lambda s: None)


def test_up_recreates_and_reruns_after_a_preemption():
    # The first run is cut short (ssh drops: 255) and the slice is preempted; the second finishes.
    fake = FakeGcloud(run_status=[255, 0], lost_after_run=[True, False])
    assert _up(fake) == 2
    assert fake.count("git archive") == 1  # one commit for every attempt
    assert fake.count("queued-resources create") == 2
    assert fake.count("queued-resources delete") == 1  # only the preempted slice
    assert fake.count("pip install") == 2  # a recreated slice is set up again
    run = launch.run_commands(V5E, "experiments/aha_small.py", "gs://bucket/aha",
                              ["--config.rl.lr=1e-4"])[0]
    assert [argv for argv in fake.calls if argv == run] == [run, run]  # same command, same workdir
    # Order within the second attempt: delete, create, poll, copy, install, run.
    kinds = [next(k for k in ("delete", "create", "describe", "scp", "pip", "r1jax.main", "git")
                  if k in " ".join(argv)) for argv in fake.calls]
    second = kinds[kinds.index("delete"):]
    assert second[:6] == ["delete", "create", "describe", "scp", "pip", "r1jax.main"]


def test_a_preemption_that_shows_late_still_counts():
    # The ssh drops before the states change; a later check sees the preemption.
    fake = FakeGcloud(run_status=[255, 0], lost_after_run=[True, False],
                      late=launch.LOST_CHECKS - 1)
    assert _up(fake) == 2
    assert fake.count("queued-resources delete") == 1


def test_a_run_stopped_by_sigterm_is_rerun_even_while_the_slice_looks_healthy():
    # r1jax.main exits STOPPED_EXIT after checkpointing on SIGTERM; the states never change.
    fake = FakeGcloud(run_status=[launch.STOPPED_EXIT, 0], lost_after_run=[False, False])
    assert _up(fake) == 2
    assert fake.count("queued-resources delete") == 1 and fake.count("r1jax.main") == 2


def test_the_stopped_exit_status_is_r1jax_mains():
    from r1jax import main

    assert launch.STOPPED_EXIT == main.STOPPED_EXIT


def test_up_stops_after_max_attempts():
    fake = FakeGcloud(run_status=[0, 0, 0], lost_after_run=[True, True, True])
    with pytest.raises(launch.LaunchError, match="gave up after 2 attempts"):
        _up(fake, max_attempts=2)
    assert fake.count("queued-resources create") == 2
    assert fake.count("r1jax.main") == 2


def test_up_does_not_retry_a_job_that_fails_on_a_healthy_slice():
    fake = FakeGcloud(run_status=[1], lost_after_run=[False])
    with pytest.raises(launch.LaunchError, match="failed with exit status 1 on a healthy slice"):
        _up(fake)
    assert fake.count("queued-resources create") == 1
    assert fake.count("queued-resources delete") == 0


def test_up_waits_while_the_request_is_queued():
    states = iter(["WAITING_FOR_RESOURCES", "PROVISIONING", "ACTIVE"])
    slept = []

    def runner(argv, capture=False):
        words = " ".join(argv)
        if "queued-resources describe" in words:
            return 0, next(states, "ACTIVE")
        return 0, "READY" if "tpu-vm describe" in words else ""

    assert launch.up(V5E, "v5litepod-8", "experiments/aha_small.py", "gs://b/w", runner=runner,
                     archive="/tmp/r.tar.gz", sleep=slept.append) == 1
    # Two polls while queued, then LOST_CHECKS checks (POLL_S apart) that the slice is healthy.
    assert slept == [launch.POLL_S] * (2 + launch.LOST_CHECKS - 1)


@pytest.mark.parametrize("state, node, lost", [
    ("ACTIVE", "READY", False), ("SUSPENDED", "", True), ("FAILED", "", True),
    ("ACTIVE", "PREEMPTED", True), ("WAITING_FOR_RESOURCES", "", False)])
def test_is_lost(state, node, lost):
    assert launch.is_lost(state, node) is lost


def test_a_workdir_that_is_not_gs_is_an_error():
    with pytest.raises(ValueError, match="--workdir must be a gs:// path"):
        launch.run_commands(V5E, "experiments/aha_small.py", "runs/aha")


@pytest.mark.parametrize("accelerator", ["v5e-8", "v5litepod", "tpu-v5p-32", "v5p-0", "V4-8"])
def test_an_unknown_accelerator_type_is_an_error(accelerator):
    with pytest.raises(ValueError, match=r"unknown accelerator type .*v5litepod-N \(TPU v5e\)"):
        launch.create_commands(V5E, accelerator)


def test_bad_arguments_on_the_command_line(no_subprocess, capsys):
    common = ["--name=r1", "--zone=us-west4-a", "--dry_run"]
    with pytest.raises(SystemExit) as e:
        launch.main(["run", *common, "--config=experiments/aha_small.py", "--workdir=/tmp/w"])
    assert e.value.code == 2 and "must be a gs:// path" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        launch.main(["create", *common, "--accelerator=v5e-8"])
    assert "unknown accelerator type 'v5e-8'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        launch.main(["run", *common, "--config=c.py", "--workdir=gs://b/w", "--", "--rl.lr=1"])
    assert "--config.KEY=VALUE" in capsys.readouterr().err
