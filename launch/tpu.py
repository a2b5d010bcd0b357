"""Run an r1jax experiment on a Cloud TPU VM slice: ``python -m launch.tpu SUBCOMMAND ...``.

Subcommands (launch/README.md has examples):
  create  ask for the slice as a queued resource and wait until it is ACTIVE
  setup   ship one commit of this repository to every worker and ``pip install -e '.[tpu]'``
  run     run ``python3 -m r1jax.main`` on every worker; its output goes to ~/r1jax.log on each
  logs    print (or follow) one worker's ~/r1jax.log
  delete  delete the queued resource and its node
  up      create + setup + run; after a preemption delete, recreate and run again (the run
          resumes from its last checkpoint in the gs:// workdir), at most --max_attempts times

The gcloud commands are built by pure functions (``*_commands``: arguments -> argv lists) so that
tests check them without gcloud; ``--dry_run`` prints them, one pasteable line each, and runs
nothing. The queued resource and its node share one name, so every command needs only ``--name``.
"""

import argparse
import dataclasses
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

# The runtime (OS image) each TPU generation's JAX docs name; a JAX version comes from pip.
RUNTIME_VERSIONS = {
    "v4": "tpu-ubuntu2204-base",
    "v5litepod": "v2-alpha-tpuv5-lite",  # TPU v5e
    "v5p": "v2-alpha-tpuv5",
    "v6e": "v2-alpha-tpuv6e",  # Trillium
}
_ACCELERATOR = re.compile(r"(v4|v5litepod|v5p|v6e)-[1-9][0-9]*")

# r1jax.main's exit status for a run stopped by SIGTERM after checkpointing (kept equal by a
# test; launch does not import r1jax, so that it runs where only gcloud and git are).
STOPPED_EXIT = 75
REMOTE_DIR = "r1jax"  # the repository on each worker, under the ssh user's home
REMOTE_ARCHIVE = "r1jax.tar.gz"
REMOTE_LOG = "~/r1jax.log"
POLL_S = 30  # seconds between state checks
# How often a slice is checked, POLL_S apart, before a job that ended on it counts as having
# ended on a healthy slice: the job (or its ssh) can end before the preemption shows in the states.
LOST_CHECKS = 3

# A queued resource in one of these states has lost (or never got) its node: with spot capacity
# that is a preemption; the request must be deleted before one with the same name is created.
LOST_STATES = frozenset({"FAILED", "SUSPENDING", "SUSPENDED"})

# runner(argv, capture) -> (exit status, stdout if capture else ""); injected so tests fake gcloud.
Runner = Callable[[list[str], bool], tuple[int, str]]


class LaunchError(Exception):
    """A step failed in a way that starting again would not fix."""


@dataclasses.dataclass(frozen=True)
class Tpu:
    """Which slice: the queued resource and its node are both called ``name``."""

    name: str
    zone: str
    project: str | None = None

    def gcloud(self, command: str, *args: str, flags: tuple[str, ...] = ()) -> list[str]:
        """``gcloud compute tpus COMMAND ARGS --zone=... [--project=...] FLAGS``."""
        project = [f"--project={self.project}"] if self.project else []
        return ["gcloud", "compute", "tpus", *command.split(), *args, f"--zone={self.zone}",
                *project, *flags]


def runtime_version(accelerator: str) -> str:
    """The JAX runtime version of an accelerator type; a malformed type is an error."""
    if not _ACCELERATOR.fullmatch(accelerator):
        raise ValueError(
            f"unknown accelerator type {accelerator!r}: expected v4-N, v5litepod-N (TPU v5e), "
            "v5p-N or v6e-N, e.g. v5litepod-8 or v5p-32")
    return RUNTIME_VERSIONS[accelerator.split("-")[0]]


def create_commands(tpu: Tpu, accelerator: str, runtime: str | None = None,
                    spot: bool = False) -> list[list[str]]:
    """Ask for the slice; without --spot it is on-demand capacity (gcloud's default tier)."""
    default = runtime_version(accelerator)  # also rejects a malformed type
    flags = (f"--node-id={tpu.name}", f"--accelerator-type={accelerator}",
             f"--runtime-version={runtime or default}") + (("--spot",) if spot else ())
    return [tpu.gcloud("queued-resources create", tpu.name, flags=flags)]


def state_commands(tpu: Tpu) -> list[list[str]]:
    """Print the queued resource's state (WAITING_FOR_RESOURCES, ACTIVE, SUSPENDED, ...) and the
    node's (READY, PREEMPTED, ...), one word each."""
    return [tpu.gcloud("queued-resources describe", tpu.name,
                       flags=("--format=value(state.state)",)),
            tpu.gcloud("tpu-vm describe", tpu.name, flags=("--format=value(state)",))]


def default_archive(tpu: Tpu) -> str:
    return os.path.join(tempfile.gettempdir(), f"r1jax-{tpu.name}.tar.gz")


def setup_commands(tpu: Tpu, commit: str = "HEAD", archive: str | None = None) -> list[list[str]]:
    """Archive ``commit`` (committed files only, so every worker runs exactly that tree), copy it
    to every worker, unpack it into a clean ~/r1jax and install it with the TPU extra."""
    archive = archive or default_archive(tpu)
    install = (f"rm -rf {REMOTE_DIR} && mkdir {REMOTE_DIR} && "
               f"tar -xzf {REMOTE_ARCHIVE} -C {REMOTE_DIR} && "
               f'cd {REMOTE_DIR} && python3 -m pip install -e ".[tpu]"')
    return [["git", "archive", "--format=tar.gz", f"--output={archive}", commit],
            tpu.gcloud("tpu-vm scp", archive, f"{tpu.name}:{REMOTE_ARCHIVE}",
                       flags=("--worker=all",)),
            tpu.gcloud("tpu-vm ssh", tpu.name, flags=("--worker=all", "--command", install))]


def run_commands(tpu: Tpu, config: str, workdir: str,
                 overrides: tuple[str, ...] | list[str] = ()) -> list[list[str]]:
    """The same ``r1jax.main`` command on every worker (JAX finds the other hosts itself); one
    gs:// workdir, so all hosts share the checkpoints and a recreated slice resumes from them."""
    if not workdir.startswith("gs://"):
        raise ValueError(f"--workdir must be a gs:// path (got {workdir!r}): every worker writes "
                         "the same run, and a preempted slice's disks are gone")
    if bad := [o for o in overrides if not o.startswith("--config.")]:
        raise ValueError(f"overrides must look like --config.KEY=VALUE, got {' '.join(bad)}")
    job = shlex.join(["python3", "-m", "r1jax.main", f"--config={config}",
                      f"--workdir={workdir}", *overrides])
    command = f"cd {REMOTE_DIR} && {job} > {REMOTE_LOG} 2>&1"
    return [tpu.gcloud("tpu-vm ssh", tpu.name, flags=("--worker=all", "--command", command))]


def logs_commands(tpu: Tpu, worker: int = 0, follow: bool = False) -> list[list[str]]:
    """One worker's log: all of it, or followed as it grows (Ctrl-C stops following)."""
    show = f"tail -F {REMOTE_LOG}" if follow else f"cat {REMOTE_LOG}"
    return [tpu.gcloud("tpu-vm ssh", tpu.name, flags=(f"--worker={worker}", "--command", show))]


def delete_commands(tpu: Tpu) -> list[list[str]]:
    """--force deletes the node first, then the request; --quiet answers gcloud's prompt."""
    return [tpu.gcloud("queued-resources delete", tpu.name, flags=("--force", "--quiet"))]


def is_lost(queued_state: str, node_state: str) -> bool:
    """Whether the slice is gone (preempted, or never provisioned) rather than merely idle."""
    return queued_state in LOST_STATES or node_state == "PREEMPTED"


# --------------------------------------------------------------------------- running commands


def run_subprocess(argv: list[str], capture: bool = False) -> tuple[int, str]:
    if not capture:
        print("+", shlex.join(argv), file=sys.stderr, flush=True)
    p = subprocess.run(argv, text=True, stdout=subprocess.PIPE if capture else None)
    return p.returncode, (p.stdout or "").strip()


def _steps(runner: Runner, commands: list[list[str]]) -> int:
    """Run commands in order; the first nonzero exit status stops them and is returned."""
    for argv in commands:
        rc, _ = runner(argv, False)
        if rc:
            return rc
    return 0


def _check(runner: Runner, commands: list[list[str]]) -> None:
    if rc := _steps(runner, commands):
        raise LaunchError(f"a command failed with exit status {rc} (its output is above)")


def _lost(tpu: Tpu, runner: Runner, sleep: Callable[[float], None]) -> bool:
    """Whether the slice is lost, checked LOST_CHECKS times unless it is lost sooner."""
    for check in range(LOST_CHECKS):
        if check:
            sleep(POLL_S)
        if is_lost(*(runner(argv, True)[1] for argv in state_commands(tpu))):
            return True
    return False


def wait_active(tpu: Tpu, runner: Runner, sleep: Callable[[float], None] = time.sleep) -> str:
    """Poll the queued resource until it is ACTIVE or lost; return that state. Waiting for
    capacity has no time limit: that is what a queued resource is for."""
    last = None
    while True:
        rc, state = runner(state_commands(tpu)[0], True)
        if rc:
            raise LaunchError(f"could not describe queued resource {tpu.name} (exit {rc})")
        if state != last:
            print(f"launch.tpu: {tpu.name} is {state}", file=sys.stderr, flush=True)
            last = state
        if state == "ACTIVE" or state in LOST_STATES:
            return state
        sleep(POLL_S)


def up(tpu: Tpu, accelerator: str, config: str, workdir: str, overrides=(), *,
       runtime: str | None = None, spot: bool = False, commit: str = "HEAD",
       archive: str | None = None, max_attempts: int = 3, runner: Runner = run_subprocess,
       sleep: Callable[[float], None] = time.sleep) -> int:
    """Create, set up and run; when the slice is lost, delete it and do it all again.

    The job checkpoints to the gs:// workdir (and on the SIGTERM of a preemption), so each new
    attempt resumes the run. A job that fails on a healthy slice is a bug, not bad luck: it is
    not retried. Returns the attempt that finished.
    """
    create, setup = create_commands(tpu, accelerator, runtime, spot), setup_commands(
        tpu, commit, archive)
    run, delete = run_commands(tpu, config, workdir, overrides), delete_commands(tpu)
    _check(runner, setup[:1])  # the archive, once: every attempt ships the same commit
    for attempt in range(1, max_attempts + 1):
        print(f"launch.tpu: attempt {attempt} of {max_attempts}", file=sys.stderr, flush=True)
        _check(runner, create)
        if wait_active(tpu, runner, sleep) == "ACTIVE":
            rc = _steps(runner, setup[1:]) or _steps(runner, run)
            # A job stopped by SIGTERM (a preemption notice) exits STOPPED_EXIT after its
            # checkpoint: start again whatever the states say yet.
            if rc != STOPPED_EXIT and not _lost(tpu, runner, sleep):
                if rc:
                    raise LaunchError(f"setup or the job failed with exit status {rc} on a "
                                      "healthy slice; not retrying (see python -m launch.tpu logs)")
                return attempt
        print(f"launch.tpu: {tpu.name} was preempted or lost; deleting it to start again",
              file=sys.stderr, flush=True)
        _check(runner, delete)
    raise LaunchError(f"gave up after {max_attempts} attempts, each preempted or never "
                      f"provisioned; the workdir {workdir} keeps the run's checkpoints")


# --------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m launch.tpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="subcommand", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--name", required=True, help="the queued resource and its node")
    common.add_argument("--zone", required=True, help="e.g. us-west4-a")
    common.add_argument("--project", help="Google Cloud project (default: gcloud's)")
    common.add_argument("--dry_run", action="store_true",
                        help="print the commands, one per line, and run nothing")
    create = argparse.ArgumentParser(add_help=False)
    create.add_argument("--accelerator", required=True, help="v4-N, v5litepod-N, v5p-N, v6e-N")
    create.add_argument("--runtime_version", help="default: the accelerator's JAX runtime")
    create.add_argument("--spot", action="store_true", help="spot capacity (default: on-demand)")
    setup = argparse.ArgumentParser(add_help=False)
    setup.add_argument("--commit", default="HEAD", help="what to ship (uncommitted edits are not)")
    run = argparse.ArgumentParser(add_help=False)
    run.add_argument("--config", required=True, help="experiments/X.py[:arg]")
    run.add_argument("--workdir", required=True, help="gs://BUCKET/...")
    run.add_argument("overrides", nargs="*", help="after --: --config.KEY=VALUE ...")
    logs = argparse.ArgumentParser(add_help=False)
    logs.add_argument("--worker", type=int, default=0)
    logs.add_argument("--follow", action="store_true", help="keep printing as the log grows")
    upp = argparse.ArgumentParser(add_help=False)
    upp.add_argument("--max_attempts", type=int, default=3,
                     help="slices to create at most (one per preemption)")
    for name, parents in [("create", [create]), ("setup", [setup]), ("run", [run]),
                          ("logs", [logs]), ("delete", []), ("up", [create, setup, run, upp])]:
        sub.add_parser(name, parents=[common, *parents])
    return parser


def _commands(args: argparse.Namespace, tpu: Tpu) -> list[list[str]]:
    """What a subcommand runs, in order (for ``up``: one attempt, without the preemption loop;
    for ``create``: the request, then the state it polls)."""
    def create() -> list[list[str]]:
        return (create_commands(tpu, args.accelerator, args.runtime_version, args.spot)
                + state_commands(tpu)[:1])

    return {
        "create": create,
        "setup": lambda: setup_commands(tpu, args.commit),
        "run": lambda: run_commands(tpu, args.config, args.workdir, args.overrides),
        "logs": lambda: logs_commands(tpu, args.worker, args.follow),
        "delete": lambda: delete_commands(tpu),
        "up": lambda: (create() + setup_commands(tpu, args.commit)
                       + run_commands(tpu, args.config, args.workdir, args.overrides)),
    }[args.subcommand]()


def main(argv: list[str] | None = None, runner: Runner = run_subprocess) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    tpu = Tpu(args.name, args.zone, args.project)
    try:
        commands = _commands(args, tpu)  # builds (and so validates) every command first
    except ValueError as e:
        parser.error(str(e))
    if args.dry_run:
        print("\n".join(shlex.join(argv) for argv in commands))
        return 0
    try:
        if args.subcommand == "up":
            up(tpu, args.accelerator, args.config, args.workdir, args.overrides,
               runtime=args.runtime_version, spot=args.spot, commit=args.commit,
               max_attempts=args.max_attempts, runner=runner)
        elif args.subcommand == "create":
            _check(runner, commands[:1])
            if (state := wait_active(tpu, runner)) != "ACTIVE":
                raise LaunchError(f"{tpu.name} is {state}; delete it and create it again")
        else:
            return _steps(runner, commands)
    except LaunchError as e:
        print(f"launch.tpu: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
