"""Transparent huge pages for glibc's malloc in the training commands.

XLA:CPU allocates each training step's temporaries (hundreds of MiB on the toy models) afresh,
above the 32 MiB up to which glibc reuses freed memory, so every step the kernel maps and zeroes
them again in 4 KiB pages: on the peer workload (benchmarks/grpo_peer_workload.py) 160k page
faults per step, 8.5k with huge pages. glibc reads its tunables at process start only, so a
command that wants them re-executes itself; numerics are unchanged. Standard library only: it
runs before the command's imports (seconds of them).
"""

import os
import platform
import sys

TUNABLE = "glibc.malloc.hugetlb=1"  # malloc madvises MADV_HUGEPAGE on what it maps (glibc 2.35+)


def environment(env: dict) -> dict:
    """``env`` with `TUNABLE` added to GLIBC_TUNABLES, unless it sets that tunable already."""
    tunables = env.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" in tunables:
        return env
    return {**env, "GLIBC_TUNABLES": ":".join(filter(None, [tunables, TUNABLE]))}


def restart() -> None:
    """Re-execute this process's command line with `environment`, on Linux with glibc, when the
    environment lacks it; else return."""
    env = environment(dict(os.environ))
    if env != dict(os.environ) and platform.libc_ver()[0] == "glibc":
        os.execve(sys.executable, sys.orig_argv, env)
