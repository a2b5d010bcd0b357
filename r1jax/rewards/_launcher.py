"""The sandbox launcher: `python3 -I -S _launcher.py SETTINGS`, SETTINGS a JSON object with
mode, work, timeout, uid, limits, cgroups and python (see `main`).

run_code starts it, with stdin and stdout already the test's files, in a new session; it confines
itself and runs `python -I main.py`, main.py being the program that run_code wrote to the
directory `work`. It is a freshly started program, not a fork of the caller, because the caller
may be multithreaded (a JAX trainer), where running Python code between fork and exec can
deadlock. Standard library only: it runs under the system python3.

Mode "isolated" (root with CAP_SYS_ADMIN): new mount, network and PID namespaces. The program is
the PID namespace's init, forked from here; it joins the call's `cgroups`, and gets a root of its
own (`_enter_new_root`): read-only the system's programs and libraries and this interpreter's
installation (`_visible`), four devices, a /proc of its PID namespace, and `_HOME`, a tmpfs of
`disk_bytes` holding main.py, its working directory and the only place it can write; the host's
root is unmounted. Then it runs as `uid`. This process kills it at `timeout` (the kernel then
kills and reaps the rest of the namespace), reaps it, and exits 0 only if it exited 0 in time.
Only a parent can kill a pid that is sure not to have been reused, which is why the killing
happens here.

Mode "weak": rlimits, `uid` unless it is None, then, where the kernel has Landlock, a Landlock
domain (`_landlock`): read-only access to `_visible` and `work`, read and write to four devices,
no file created anywhere, no TCP, no ptrace of (so no /proc/PID/environ of) and, from Landlock
ABI 6, no signal to any process outside the program; then exec the program behind a bootstrap
that refuses sockets. run_code kills the process group at the timeout.
"""

import ctypes
import json
import math
import os
import resource
import select
import signal
import struct
import sys

_CLONE_NEWNS, _CLONE_NEWPID, _CLONE_NEWNET = 0x00020000, 0x20000000, 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 32, 4096, 16384, 1 << 18
_MNT_DETACH = 2
_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS = 1, 38
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}  # no libc wrapper
_SYS_LANDLOCK_CREATE_RULESET, _SYS_LANDLOCK_ADD_RULE, _SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446

# What the program may see, read-only, where it exists, besides the interpreter's installation.
_SYSTEM = ("/usr", "/bin", "/lib", "/lib32", "/lib64", "/libx32", "/etc/ld.so.cache")
_DEVICES = ("/dev/null", "/dev/zero", "/dev/random", "/dev/urandom")
_HOME = "/sandbox"  # the isolated program's working directory, the only place it can write
_INODES = 4096  # files and directories the program may create there

# Landlock: filesystem rights (bits of LANDLOCK_ACCESS_FS_*), rules and scopes.
_LL_EXECUTE, _LL_WRITE_FILE, _LL_READ_FILE, _LL_READ_DIR = 1, 2, 4, 8
_LL_FS_BITS = {1: 13, 2: 14, 3: 15, 4: 15}  # rights each ABI knows: bits below this; 16 from 5
_LL_NET_TCP = 3  # bind and connect (ABI 4)
_LL_SCOPES = 3  # abstract Unix sockets and signals (ABI 6)
_LL_RULE_PATH_BENEATH, _LL_CREATE_RULESET_VERSION = 1, 1

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


def _check(result: int) -> int:
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return result


def _syscall(number: int, *args) -> int:
    return _check(_libc.syscall(ctypes.c_long(number), *(
        a if isinstance(a, (bytes, type(None))) else ctypes.c_long(a) for a in args)))


def _die_with_parent() -> None:
    _check(_libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0))


def _mount(source, target, fstype, flags: int, options=None) -> None:
    source, target, fstype, options = (
        None if a is None else os.fsencode(a) for a in (source, target, fstype, options))
    _check(_libc.mount(source, target, fstype, ctypes.c_ulong(flags), options))


def _visible() -> list[str]:
    """What the program may read: `_SYSTEM` (where it exists) and this interpreter's installation,
    which is the program's, unless one of those already holds it."""
    paths = [p for p in _SYSTEM if os.path.lexists(p)]
    prefix = os.path.realpath(sys.base_prefix)
    inside = (os.path.realpath(p) for p in paths)
    return paths if any(prefix == p or prefix.startswith(p + "/") for p in inside) else [
        *paths, prefix]


def _enter_new_root(s: dict, program: bytes) -> None:
    """Builds the program's root on a tmpfs mounted over `work`, makes it the root, and detaches
    the host's; the working directory is then `_HOME`."""
    new = s["work"]
    _mount("tmpfs", new, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=64k,mode=755")
    for path in _visible():
        target = new + path
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.islink(path):  # /bin -> usr/bin where /usr is merged
            os.symlink(os.readlink(path), target)
            continue
        if os.path.isdir(path):
            os.mkdir(target)
        else:
            open(target, "w").close()
        _mount(path, target, None, _MS_BIND)
        _mount(None, target, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)
    os.mkdir(new + "/dev")
    for device in filter(os.path.exists, _DEVICES):
        open(new + device, "w").close()
        _mount(device, new + device, None, _MS_BIND)
    os.mkdir(new + "/proc")
    _mount("proc", new + "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    os.mkdir(new + _HOME)
    uid = s["uid"]
    _mount("tmpfs", new + _HOME, "tmpfs", _MS_NOSUID | _MS_NODEV,
           f"size={s['disk_bytes']},nr_inodes={_INODES},mode=700,uid={uid},gid={uid}")
    fd = os.open(new + _HOME + "/main.py", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "wb") as f:
        f.write(program)
    os.chown(new + _HOME + "/main.py", uid, uid)
    _mount(None, new, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)
    os.chdir(new)
    # The host's root ends up stacked on the new one, here: detach it.
    _syscall(_SYS_PIVOT_ROOT[os.uname().machine], b".", b".")
    _check(_libc.umount2(b".", _MNT_DETACH))
    os.chdir(_HOME)


def _confine(s: dict) -> None:
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


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 where Landlock is missing or disabled."""
    try:
        return _syscall(_SYS_LANDLOCK_CREATE_RULESET, None, 0, _LL_CREATE_RULESET_VERSION)
    except OSError:
        return 0


def _landlock(abi: int, work: str) -> None:
    """Restricts this process and all it starts: see the module docstring."""
    handled = (1 << _LL_FS_BITS.get(abi, 16)) - 1
    attr = struct.pack("=QQQ", handled, _LL_NET_TCP if abi >= 4 else 0,
                       _LL_SCOPES if abi >= 6 else 0)[: 8 if abi < 4 else 16 if abi < 6 else 24]
    ruleset = _syscall(_SYS_LANDLOCK_CREATE_RULESET, attr, len(attr), 0)
    read = _LL_EXECUTE | _LL_READ_FILE
    rules = [(p, read | _LL_READ_DIR if os.path.isdir(p) else read) for p in [*_visible(), work]]
    rules += [(d, _LL_READ_FILE | _LL_WRITE_FILE) for d in _DEVICES if os.path.exists(d)]
    for path, access in rules:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        try:
            rule = struct.pack("=Qi", access, fd)
            _syscall(_SYS_LANDLOCK_ADD_RULE, ruleset, _LL_RULE_PATH_BENEATH, rule, 0)
        finally:
            os.close(fd)
    _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
    _syscall(_SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0)
    os.close(ruleset)


def _isolated(s: dict) -> int:
    _die_with_parent()
    with open(os.path.join(s["work"], "main.py"), "rb") as f:
        program = f.read()
    _check(_libc.unshare(_CLONE_NEWNS | _CLONE_NEWNET | _CLONE_NEWPID))
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    pid = os.fork()
    if pid == 0:
        try:
            for cgroup in s["cgroups"]:
                with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
                    f.write("0")  # this process
            _enter_new_root(s, program)
            _confine(s)
            _die_with_parent()  # changing the uid cleared it
            os.execve(s["python"], [s["python"], "-I", "main.py"], {})
        finally:
            os._exit(127)
    pidfd = os.pidfd_open(pid)
    in_time = bool(select.select([pidfd], [], [], s["timeout"])[0])
    if not in_time:
        os.kill(pid, signal.SIGKILL)
    status = os.waitpid(pid, 0)[1]
    return 0 if in_time and status == 0 else 1


def _weak(s: dict) -> None:
    os.chdir(s["work"])
    _confine(s)
    if abi := landlock_abi():
        _landlock(abi, s["work"])
    os.execve(s["python"], [s["python"], "-I", "-c", _REFUSE_SOCKETS, "main.py"], {})


def main(settings: dict) -> int:
    """settings: mode ("isolated" or "weak"), work (directory with main.py), timeout (seconds),
    uid (int, or None to keep the caller's), memory_bytes, output_bytes, processes (rlimits),
    disk_bytes (the size of `_HOME`), cgroups (directories of cgroups for the program to join),
    python (interpreter for the program)."""
    return _isolated(settings) if settings["mode"] == "isolated" else _weak(settings)


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
