"""The sandbox launcher: `python3 -I -S _launcher.py SETTINGS`, SETTINGS a JSON object with
mode, work, timeout, uid, limits and python (see `main`).

run_code starts it, with stdin and stdout already the test's files, in a new session; it confines
itself and runs `python -I main.py` in the directory `work`. It is a freshly started program, not
a fork of the caller, because the caller may be multithreaded (a JAX trainer), where running
Python code between fork and exec can deadlock. Standard library only: it runs under the system
python3.

Mode "isolated" (root with CAP_SYS_ADMIN): new mount, network and PID namespaces, every mount
read-only except `work`; the program is the PID namespace's init, forked from here and run as
`uid`. This process kills it at `timeout` (the kernel then kills and reaps the rest of the
namespace), reaps it, and exits 0 only if it exited 0 in time. Only a parent can kill a pid that
is sure not to have been reused, which is why the killing happens here.

Mode "weak": rlimits, `uid` unless it is None, then exec the program behind a bootstrap that
refuses sockets; run_code kills the process group at the timeout.
"""

import ctypes
import json
import math
import os
import re
import resource
import select
import signal
import sys

_CLONE_NEWNS, _CLONE_NEWPID, _CLONE_NEWNET = 0x00020000, 0x20000000, 0x40000000
_MS_RDONLY, _MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 1, 32, 4096, 16384, 1 << 18
_MOUNT_FLAGS = {"nosuid": 2, "nodev": 4, "noexec": 8}  # kept when a mount is made read-only
_PR_SET_PDEATHSIG = 1

_REFUSE_SOCKETS = """\
import _socket, runpy, socket, sys
class _Refused(socket.socket):
    def __init__(self, *args, **kwargs):
        raise OSError("network access is disabled in this sandbox")
socket.socket = _socket.socket = _Refused
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def _die_with_parent() -> None:
    _check(_libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0))


def _mounts() -> list[tuple[bytes, int]]:
    """(mount point, flags to keep) for every mount, from /proc/self/mountinfo."""
    mounts = []
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields = line.split()
            point = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), fields[4])
            options = fields[5].decode().split(",")
            mounts.append((point, sum(_MOUNT_FLAGS.get(o, 0) for o in options)))
    return mounts


def _read_only_except(work: str) -> None:
    _check(_libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None))
    mounts = _mounts()
    _check(_libc.mount(os.fsencode(work), os.fsencode(work), None, _MS_BIND, None))
    for point, keep in mounts:
        _check(_libc.mount(None, point, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | keep, None))


def _confine(s: dict) -> None:
    os.chdir(s["work"])
    for which, value in (
        (resource.RLIMIT_CPU, math.ceil(s["timeout"]) + 1),
        (resource.RLIMIT_AS, s["memory_bytes"]),
        (resource.RLIMIT_FSIZE, s["output_bytes"]),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_NPROC, s["processes"]),
    ):
        hard = resource.getrlimit(which)[1]
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))
    if (uid := s["uid"]) is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)


def _isolated(s: dict) -> int:
    _die_with_parent()
    _check(_libc.unshare(_CLONE_NEWNS | _CLONE_NEWNET | _CLONE_NEWPID))
    _read_only_except(s["work"])
    program = os.fork()
    if program == 0:
        try:
            _confine(s)
            _die_with_parent()  # changing the uid cleared it
            os.execve(s["python"], [s["python"], "-I", "main.py"], {})
        finally:
            os._exit(127)
    pidfd = os.pidfd_open(program)
    in_time = bool(select.select([pidfd], [], [], s["timeout"])[0])
    if not in_time:
        os.kill(program, signal.SIGKILL)
    status = os.waitpid(program, 0)[1]
    return 0 if in_time and status == 0 else 1


def _weak(s: dict) -> None:
    _confine(s)
    os.execve(s["python"], [s["python"], "-I", "-c", _REFUSE_SOCKETS, "main.py"], {})


def main(settings: dict) -> int:
    """settings: mode ("isolated" or "weak"), work (directory with main.py), timeout (seconds),
    uid (int, or None to keep the caller's), memory_bytes, output_bytes, processes (rlimits),
    python (interpreter for the program)."""
    return _isolated(settings) if settings["mode"] == "isolated" else _weak(settings)


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
