"""run_code: run an untrusted Python program against (stdin, expected stdout) tests in a sandbox.

Every test runs `python3 -I main.py` in its own session and process group, with an empty
environment, stdin and stdout redirected to files it cannot otherwise reach, and rlimits on CPU
time, address space (`MEMORY_BYTES` per process), file size (`OUTPUT_BYTES`, which also caps
stdout), processes (`MAX_PROCESSES`) and core dumps. `timeout_s` bounds the whole call. The
confinement is done by `_launcher.py`, a separate program, so that the caller never forks itself
and may be multithreaded.

The first call decides the mode with probe runs, strongest first:
- isolated, where the process may (root with CAP_SYS_ADMIN): new network, mount and PID
  namespaces and a uid of its own. The network namespace's only interface is a loopback that is
  down: no connection anywhere, 127.0.0.1 included. The program's root holds only, read-only, the
  system's programs and libraries (/usr, /bin, /lib*, /etc/ld.so.cache) and the interpreter's
  installation; /dev/null, zero, random and urandom; a /proc of its own PID namespace; and
  /sandbox, a tmpfs of `DISK_BYTES` that is its working directory and the only place it can
  write. No home, project source, data or /tmp: the host's root is unmounted. The program is its PID
  namespace's init: killing it makes the kernel kill and reap everything it started, children
  that left the process group included. Where a cgroup can be made (a cgroup v1 hierarchy for
  memory and for pids, or cgroup v2 with both controllers enabled in the parent of the caller's
  cgroup, or in the root cgroup when the caller is there) each call gets one: `MEMORY_BYTES` for
  all its processes and its directory together, without swap, and `MAX_PROCESSES` tasks.
- weak, otherwise (not root, or a container without CAP_SYS_ADMIN), with a warning. Where the
  kernel has Landlock (Linux 5.13 and later, where enabled) the program gets a Landlock domain: it
  may read only what the isolated program sees read-only, and its own directory; it may create no
  file; it may not ptrace, so not read /proc/PID/environ of, any process outside itself; and it
  may neither open TCP connections (Landlock ABI 4, Linux 6.7) nor signal processes outside
  itself (ABI 6, Linux 6.12). As root it runs as a uid of its own.

What each mode guarantees, for one call:

                 isolated                    weak, Landlock              weak, no Landlock
reads            system programs and         the same, and its own       whatever its uid may:
                 libraries, the              directory                   project source and data
                 interpreter, its directory                              too
writes           its directory               stdout only                 wherever its uid may (each
                 (DISK_BYTES), stdout                                    file <= OUTPUT_BYTES)
other processes  none visible                no /proc entry, ptrace or   lists all; reads the
                                             (ABI 6) signal of any       environment of, and
                                             outside it                  signals, its uid's: the
                                                                         caller's if not root
network          none                        no TCP (ABI 4); other       a Python-level guard
                                             sockets: a Python-level     (ctypes gets around it)
                                             guard
memory           MEMORY_BYTES in all, its    MEMORY_BYTES per process    MEMORY_BYTES per process
                 directory included, with a
                 cgroup; else per process
processes        MAX_PROCESSES               MAX_PROCESSES (own uid) as  as with Landlock
                                             root; else the uid's count
                                             + MAX_PROCESSES
at the timeout   all it started is killed    its process group is        as with Landlock
                                             killed; setsid() escapes

Each mode starts the program with an empty environment. A caller killed in the middle of a call
can leave an empty cgroup directory, r1jax-sandbox-PID.
"""

import contextlib
import errno
import json
import logging
import math
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from r1jax.rewards import _launcher
from r1jax.rewards.registry import register

MEMORY_BYTES = 1 << 30  # per process, and per call with a cgroup
OUTPUT_BYTES = 16 << 20
DISK_BYTES = 64 << 20  # the isolated program's directory
MAX_PROCESSES = 32
CODE_TIMEOUT_S = 5.0  # what the `code` reward gives one program; keep the pool's timeout above it
# The program's interpreter, resolved: a virtual environment's python is not in its view.
PYTHON = os.path.realpath(shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
                          or sys.executable)
_LAUNCHER = os.path.join(os.path.dirname(__file__), "_launcher.py")
_UID_BASE = 1 << 20  # sandbox uid: _UID_BASE + the caller's pid, so concurrent callers differ
_REAP_S = 2.0  # how long a killed program may take to be reaped
_CLEANUP_S = 0.3  # of timeout_s, kept for starting, killing and reaping a program, and cleanup
_CONTROLLERS = ("memory", "pids")

_log = logging.getLogger(__name__)
_lock = threading.Lock()  # one program at a time per process: runs share the uid and cgroup
_isolated: bool | None = None  # decided by the first run
_cgroups: dict[str, tuple[bool, list[str]]] = {}  # see _cgroup_parents; decided by the first run


def _uid() -> int:
    return _UID_BASE + os.getpid()


def _user_tasks() -> int:
    """Processes and threads of the caller's uid: what RLIMIT_NPROC counts."""
    uid, count = str(os.getuid()), 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/status") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
            if status["Uid"].split()[0] == uid:
                count += int(status["Threads"])
    return count


def _wait(pid: int, timeout: float) -> bool:
    """Waits up to `timeout` seconds for child `pid` to exit; True if it did (it is not reaped)."""
    fd = os.pidfd_open(pid)
    try:
        return bool(select.select([fd], [], [], max(timeout, 0.0))[0])
    finally:
        os.close(fd)


def _private_file(path: str):
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")


def _cgroup_parents() -> dict[str, tuple[bool, list[str]]]:
    """{directory: (cgroup v2?, controllers)} under which a call's cgroups go, for `_CONTROLLERS`:
    a controller's cgroup v1 hierarchy, at the caller's cgroup; else cgroup v2, at the parent of
    the caller's cgroup (a v2 cgroup holding processes cannot give children controllers) or at
    the root if the caller is there, if the controller is enabled there. {} if one is missing."""
    own = {}  # "memory", "pids", ... in cgroup v1, "" in v2 -> the caller's cgroup
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for name in controllers.split(",") if controllers else [""]:
                own[name] = path
    parents: dict[str, tuple[bool, list[str]]] = {}
    v2 = None
    with open("/proc/self/mountinfo") as f:
        for fields in map(str.split, f):
            kind, root, point = fields[fields.index("-") + 1], fields[3].rstrip("/"), fields[4]
            names = [""] if kind == "cgroup2" else (
                [c for c in _CONTROLLERS if c in fields[-1].split(",")] if kind == "cgroup" else [])
            for name in names:
                path = own.pop(name, None)  # None for a hierarchy mounted twice: seen
                if path is None or not (path + "/").startswith(root + "/"):
                    continue  # a hierarchy this process is not in, or cannot see its cgroup in
                cgroup = os.path.normpath(os.path.join(point, path[len(root):].lstrip("/")))
                if name:
                    parents.setdefault(cgroup, (False, []))[1].append(name)
                else:
                    v2 = cgroup if path == "/" else os.path.dirname(cgroup)
    missing = [c for c in _CONTROLLERS if not any(c in names for _, names in parents.values())]
    if missing and v2 is not None:
        with open(os.path.join(v2, "cgroup.subtree_control")) as f:
            enabled = f.read().split()
        if all(c in enabled for c in missing):
            parents[v2] = (True, missing)
            missing = []
    return {} if missing else parents


def _cgroup_limits(v2: bool, controllers: list[str]) -> list[tuple[str, int, bool]]:
    """(file, value, whether the file must exist) for a call's cgroup."""
    limits = []
    if "memory" in controllers:
        limits += [("memory.max", MEMORY_BYTES, True), ("memory.swap.max", 0, False)] if v2 else [
            ("memory.limit_in_bytes", MEMORY_BYTES, True),
            ("memory.memsw.limit_in_bytes", MEMORY_BYTES, False),  # memory plus swap
        ]
    if "pids" in controllers:
        limits.append(("pids.max", MAX_PROCESSES, True))
    return limits


def _remove_cgroup(path: str) -> None:
    deadline = time.monotonic() + _REAP_S
    while True:
        try:
            os.rmdir(path)
            return
        except OSError as e:  # busy until the last of the program's processes has left it
            if e.errno != errno.EBUSY or time.monotonic() > deadline:
                _log.warning("run_code: cannot remove cgroup %s: %s", path, e)
                return
            time.sleep(0.01)


@contextlib.contextmanager
def _call_cgroups(parents: dict[str, tuple[bool, list[str]]]):
    """Makes one cgroup under each of `parents` (see _cgroup_parents) with this call's limits;
    yields their directories, and removes them afterwards."""
    made = []
    try:
        for parent, (v2, controllers) in parents.items():
            path = os.path.join(parent, f"r1jax-sandbox-{os.getpid()}")
            os.makedirs(path, exist_ok=True)  # it exists if a killed caller had this pid
            made.append(path)
            for name, value, required in _cgroup_limits(v2, controllers):
                if required or os.path.exists(os.path.join(path, name)):
                    with open(os.path.join(path, name), "w") as f:
                        f.write(str(value))
        yield made
    finally:
        for path in made:
            _remove_cgroup(path)


def _run_test(root: str, work: str, stdin: str, timeout: float, isolated: bool,
              cgroups: list[str]) -> bytes | None:
    """The program's stdout for one test, or None if it failed, crashed or ran out of time."""
    in_path, out_path = os.path.join(root, "stdin"), os.path.join(root, "stdout")
    with _private_file(in_path) as f:
        f.write(str(stdin).encode())
    as_root = os.geteuid() == 0
    settings = {
        "mode": "isolated" if isolated else "weak",
        "work": work,
        "timeout": timeout,
        "uid": _uid() if as_root else None,
        "memory_bytes": MEMORY_BYTES,
        "output_bytes": OUTPUT_BYTES,
        "processes": MAX_PROCESSES if as_root else _user_tasks() + MAX_PROCESSES,
        "disk_bytes": DISK_BYTES,
        "cgroups": cgroups,
        "python": PYTHON,
    }
    command = [PYTHON, "-I", "-S", _LAUNCHER, json.dumps(settings)]
    with open(in_path, "rb") as fin, _private_file(out_path) as fout:
        launcher = subprocess.Popen(
            command,
            stdin=fin,
            stdout=fout,
            stderr=subprocess.DEVNULL,
            env={},
            start_new_session=True,
        )
    if isolated:  # the launcher kills the program at the timeout
        in_time = _wait(launcher.pid, timeout + _REAP_S)
        if not in_time:  # the launcher itself is stuck; never expected
            launcher.kill()
    else:
        in_time = _wait(launcher.pid, timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launcher.pid, signal.SIGKILL)  # unreaped, so the group id is still ours
    if launcher.wait() != 0 or not in_time:
        return None
    with open(out_path, "rb") as f:
        return f.read(OUTPUT_BYTES)


def _lines(text: str) -> list[str]:
    return text.strip().splitlines()


def _same_output(output: bytes, expected) -> bool:
    """Equal up to trailing whitespace on each line and blank lines at either end. The line counts
    are compared first, so that a flood of output lines costs no Python loop."""
    got, want = _lines(output.decode(errors="replace")), _lines(str(expected))
    return len(got) == len(want) and all(g.rstrip() == w.rstrip() for g, w in zip(got, want))


def _run(program: str, tests, timeout_s: float, isolated: bool,
         cgroups: dict[str, tuple[bool, list[str]]]) -> float:
    deadline = time.monotonic() + timeout_s
    passed = 0
    with (tempfile.TemporaryDirectory(prefix="r1jax-sandbox-") as root,
          _call_cgroups(cgroups) as joined):
        os.chmod(root, 0o711)  # the program may pass through to its directory, not look around
        work = os.path.join(root, "work")
        os.mkdir(work, 0o700)
        with open(os.path.join(work, "main.py"), "w", encoding="utf-8") as f:
            f.write(program)
        if os.geteuid() == 0:
            os.chown(work, _uid(), _uid())
        for stdin, expected in tests:
            remaining = deadline - time.monotonic() - _CLEANUP_S
            if remaining <= 0:
                break
            output = _run_test(root, work, stdin, remaining, isolated, joined)
            passed += output is not None and _same_output(output, expected)
    return passed / len(tests)


def _works(isolated: bool, cgroups: dict) -> bool:
    """Whether a trivial program runs and prints in that mode."""
    try:
        return _run("print(6 * 7)", [("", "42")], 10.0, isolated, cgroups) == 1.0
    except Exception:
        return False


def _decide_mode() -> None:
    """Sets _isolated and _cgroups to the strongest mode that works here, and says what is
    missing."""
    global _isolated, _cgroups
    try:
        parents = _cgroup_parents() if os.geteuid() == 0 else {}
    except (OSError, ValueError):
        parents = {}
    tries = [(True, parents), (True, {}), (False, {})] if parents else [(True, {}), (False, {})]
    for _isolated, _cgroups in tries:
        if _works(_isolated, _cgroups):
            break
    else:
        _log.error("run_code: cannot run %s here; every program will score 0", PYTHON)
        return
    if _isolated and not _cgroups:
        _log.warning("run_code: no cgroup for memory and pids here; the sandbox bounds memory "
                     "per process only (%d bytes, up to %d processes)", MEMORY_BYTES,
                     MAX_PROCESSES)
    elif not _isolated:
        abi = _launcher.landlock_abi()
        _log.warning("run_code: namespaces are not available; the sandbox is weaker (%s)",
                     f"Landlock ABI {abi}" if abi else "no Landlock: programs can read what this "
                     "user can, the environments of this user's processes included")


def run_code(program: str, tests, timeout_s: float = 5.0) -> float:
    """Share of `tests` (pairs of stdin and expected stdout, compared without trailing whitespace)
    that `program` passes in the sandbox. Never raises; returns within about timeout_s."""
    if not tests:
        return 0.0
    with _lock:
        if _isolated is None:
            _decide_mode()
        try:
            return _run(program, tests, timeout_s, _isolated, _cgroups)
        except Exception:
            return 0.0


_CODE_BLOCK = re.compile(r"```(?:python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL)


def extract_code(text: str) -> str | None:
    """The last fenced code block (```python ... ```) of a completion."""
    blocks = _CODE_BLOCK.findall(text)
    return blocks[-1] if blocks else None


@register("code", fields=("tests",))
def code_term(completions, examples) -> np.ndarray:
    """`run_code` of the last code block against example["tests"]; NaN without tests."""
    scores = []
    for completion, example in zip(completions, examples, strict=True):
        program, tests = extract_code(completion), example.get("tests")
        if not tests:
            scores.append(math.nan)
        else:
            scores.append(0.0 if program is None else run_code(program, tests, CODE_TIMEOUT_S))
    return np.array(scores, dtype=np.float64)
