"""The training commands' restart with huge pages for glibc's malloc (r1jax/huge_pages.py)."""

import os
import sys

from r1jax import huge_pages


def test_the_tunable_is_added_to_those_set_and_a_users_own_setting_kept():
    assert huge_pages.environment({})["GLIBC_TUNABLES"] == huge_pages.TUNABLE
    assert huge_pages.environment({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})[
        "GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{huge_pages.TUNABLE}"
    mine = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0", "HOME": "/root"}
    assert huge_pages.environment(mine) == mine


def test_restart_executes_the_same_command_line_once(monkeypatch):
    calls = []
    monkeypatch.setattr(os, "execve", lambda *args: calls.append(args))
    monkeypatch.setattr(huge_pages.platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    huge_pages.restart()
    ((executable, argv, env),) = calls
    assert (executable, argv) == (sys.executable, sys.orig_argv)
    assert env["GLIBC_TUNABLES"] == huge_pages.TUNABLE and env["PATH"] == os.environ["PATH"]
    monkeypatch.setenv("GLIBC_TUNABLES", huge_pages.TUNABLE)  # what the restarted process sees
    huge_pages.restart()
    assert len(calls) == 1
