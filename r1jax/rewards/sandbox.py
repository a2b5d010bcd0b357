"""run_code: run an untrusted Python program against (stdin, expected stdout) tests in a sandbox.

Every test runs `python3 -I main.py` in a fresh temporary working directory, in its own session
and process group, with an empty environment, stdin and stdout redirected to files outside that
directory, and rlimits on CPU time, address space (`MEMORY_BYTES`), file size (`OUTPUT_BYTES`,
which also caps stdout), processes (`MAX_PROCESSES`) and core dumps. `timeout_s` bounds the whole
call. The confinement is done by `_launcher.py`, a separate program, so that the caller never
forks itself and may be multithreaded.

Where the process may (root with CAP_SYS_ADMIN, checked once per process by a probe run) the
program is also confined:
- a new network namespace, whose only interface is a loopback that is down: no connection
  anywhere, 127.0.0.1 included;
- a new mount namespace in which every mount is read-only except the working directory;
- a new PID namespace with the program as its init. Killing that one process makes the kernel
  kill and reap everything the program started, including children that left the process group;
- an unprivileged uid of its own (no real user), so RLIMIT_NPROC caps its processes and it can
  neither signal nor read anything private to other users.
Otherwise (not root, or a container without CAP_SYS_ADMIN) the guarantees are weaker and a warning
says so: sockets are refused by replacing `socket.socket` before the program runs (plain Python
code only; ctypes or a subprocess gets around it); the program may write wherever its uid may
(/tmp, for one); the final kill reaches its process group only, so a child that called setsid()
survives; as root the program still gets its own uid and MAX_PROCESSES, and otherwise
RLIMIT_NPROC is the caller's current process count plus MAX_PROCESSES.
"""

import contextlib
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

from r1jax.rewards.registry import register

MEMORY_BYTES = 1 << 30
OUTPUT_BYTES = 16 << 20
MAX_PROCESSES = 32
CODE_TIMEOUT_S = 5.0  # what the `code` reward gives one program; keep the pool's timeout above it
PYTHON = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin") or sys.executable
_LAUNCHER = os.path.join(os.path.dirname(__file__), "_launcher.py")
_UID_BASE = 1 << 20  # sandbox uid: _UID_BASE + the caller's pid, so concurrent callers differ
_REAP_S = 2.0  # how long a killed program may take to be reaped
_CLEANUP_S = 0.3  # of timeout_s, kept for starting, killing and reaping a program, and cleanup

_log = logging.getLogger(__name__)
_lock = threading.Lock()  # one program at a time per process: runs share the uid
_isolated: bool | None = None  # decided by the first run


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


def _run_test(root: str, work: str, stdin: str, timeout: float, isolated: bool) -> bytes | None:
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


def _same_output(output: bytes, expected) -> bool:
    """Equal up to trailing whitespace on each line and blank lines at either end."""

    def normalize(text: str) -> str:
        return "\n".join(line.rstrip() for line in text.strip().splitlines())

    return normalize(output.decode(errors="replace")) == normalize(str(expected))


def _run(program: str, tests, timeout_s: float, isolated: bool) -> float:
    deadline = time.monotonic() + timeout_s
    passed = 0
    with tempfile.TemporaryDirectory(prefix="r1jax-sandbox-") as root:
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
            output = _run_test(root, work, stdin, remaining, isolated)
            passed += output is not None and _same_output(output, expected)
    return passed / len(tests)


def _works(isolated: bool) -> bool:
    """Whether a trivial program runs and prints in that mode."""
    try:
        return _run("print(6 * 7)", [("", "42")], 10.0, isolated) == 1.0
    except Exception:
        return False


def run_code(program: str, tests, timeout_s: float = 5.0) -> float:
    """Share of `tests` (pairs of stdin and expected stdout, compared without trailing whitespace)
    that `program` passes in the sandbox. Never raises; returns within about timeout_s."""
    global _isolated
    if not tests:
        return 0.0
    with _lock:
        if _isolated is None:
            _isolated = _works(isolated=True)
            if not _isolated:
                _log.warning("run_code: namespaces are not available; the sandbox is weaker")
                if not _works(isolated=False):
                    _log.error("run_code: cannot run %s here; every program will score 0", PYTHON)
        try:
            return _run(program, tests, timeout_s, _isolated)
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
