import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np
import pytest

from r1jax import rewards
from r1jax.rewards import _launcher, sandbox

ADD = "a, b = map(int, input().split())\nprint(a + b)\n"
TESTS = [("1 2\n", "3\n"), ("10 20\n", "30")]
TIMEOUT_S = 1.5
# A call whose launchers kill their programs at its deadline ends by TIMEOUT_S - _CLEANUP_S plus
# overhead; run_code kills a launcher that overruns by _REAP_S, so a call reaching LIMIT_S had a
# launcher that failed to kill its program. The machine's speed only has to fit within _REAP_S.
LIMIT_S = TIMEOUT_S - sandbox._CLEANUP_S + sandbox._REAP_S


def _sandbox_processes() -> list[int]:
    """Processes left by a sandbox: working directory in a sandbox dir, or the sandbox uid."""
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
            uid = os.stat(f"/proc/{pid}").st_uid
        except OSError:  # gone, or a zombie whose cwd cannot be read: the uid still tells
            try:
                uid, cwd = os.stat(f"/proc/{pid}").st_uid, ""
            except OSError:
                continue
        if "r1jax-sandbox-" in cwd or (sandbox._isolated and uid == sandbox._uid()):
            left.append(int(pid))
    return left


def _sandbox_dirs() -> set[str]:
    """Sandbox directories, and cgroups (by path)."""
    places = [tempfile.gettempdir(), *sandbox._cgroups]
    return {os.path.join(p, d) for p in places for d in os.listdir(p)
            if d.startswith("r1jax-sandbox-")}


@pytest.fixture
def contained():
    """Runs the check after the test: nothing left behind."""
    dirs = _sandbox_dirs()
    yield
    deadline = time.monotonic() + 1.0  # killed processes of the weaker sandbox may still be exiting
    while _sandbox_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _sandbox_processes() == []
    assert _sandbox_dirs() <= dirs


def _run(program, tests=TESTS):
    start = time.monotonic()
    score = rewards.run_code(program, tests, timeout_s=TIMEOUT_S)
    assert time.monotonic() - start < LIMIT_S
    return score


@pytest.fixture(params=["isolated", "weak"])
def mode(request, monkeypatch):
    """Each sandbox mode this machine offers: the weak one is forced where both are."""
    rewards.run_code("", [("", "")])  # decides the sandbox mode
    if request.param == "isolated" and not sandbox._isolated:
        pytest.skip("no namespaces here")
    if request.param == "weak":
        if not _launcher.landlock_abi():
            pytest.skip("no Landlock here: the documented weak sandbox does not stop this")
        monkeypatch.setattr(sandbox, "_isolated", False)
        monkeypatch.setattr(sandbox, "_cgroups", {})
    return request.param


def test_correct_and_half_correct(contained):
    assert _run(ADD) == 1.0
    assert _run("a, b = map(int, input().split())\nprint(a + b if a < 5 else 0)") == 0.5
    assert _run("print(") == 0.0  # syntax error
    assert rewards.run_code(ADD, []) == 0.0


def test_infinite_loop(contained):
    assert _run("while True:\n    pass") == 0.0


def test_sleep_in_a_child_that_left_the_process_group(contained):
    rewards.run_code("", [("", "")])  # decides the sandbox mode
    if not sandbox._isolated:
        pytest.skip(
            "no PID namespace here: the documented weaker sandbox kills the process group only"
        )
    program = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(1000)\n" + ADD
    _run(program)  # the child outlives the program; it must not outlive the call


def test_fork_flood(contained):
    assert (
        _run(
            "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
        )
        == 0.0
    )


def test_large_allocation(contained):
    assert _run("x = bytearray(4 << 30)\n" + ADD) == 0.0


def test_huge_output(contained):
    assert _run("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)") == 0.0


def test_write_outside_its_directory(contained):
    rewards.run_code("", [("", "")])  # decides the sandbox mode
    if not sandbox._isolated:
        pytest.skip("no mount namespace here: the documented weaker sandbox does not stop this")
    path = "/tmp/r1jax_escape_test"
    assert not os.path.exists(path)
    assert _run(f"open({path!r}, 'w').write('escaped')\n" + ADD) == 0.0
    assert not os.path.exists(path)
    assert (
        _run("open('scratch.txt', 'w').write('fine')\n" + ADD) == 1.0
    )  # its own directory is writable


def test_network(contained):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.2)
        port = listener.getsockname()[1]
        program = (
            "import socket\n"
            f"s = socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
            "s.sendall(b'x')\n"
        )
        assert _run(program + ADD) == 0.0
        with pytest.raises(socket.timeout):
            listener.accept()


def test_environment_and_identity(contained, monkeypatch):
    monkeypatch.setenv("R1JAX_SECRET", "x")
    program = (
        "import os\nprint(sorted(k for k in os.environ if k != 'LC_CTYPE'))"  # Python sets LC_CTYPE
    )
    assert _run(program, [("", "[]")]) == 1.0
    if sandbox._isolated:
        assert _run("import os\nprint(os.getuid() != 0)", [("", "True")]) == 1.0


def test_code_reward():
    completion = "<think>easy</think><answer>```python\n" + ADD + "```</answer>"
    scores = rewards.get("code")(
        [completion, "no code", completion], [{"tests": TESTS}, {"tests": TESTS}, {}]
    )
    np.testing.assert_array_equal(scores[:2], [1.0, 0.0])
    assert np.isnan(scores[2])


def test_code_reward_in_the_pool(contained):
    completions = [f"```python\n{ADD}```", "```python\nprint(0)\n```"]
    timeout_s = sandbox.CODE_TIMEOUT_S + 2
    with rewards.RewardScorer({"code": 1.0}, num_workers=1, timeout_s=timeout_s) as scorer:
        total, _, stats = scorer.score(completions, [{"tests": TESTS}] * 2)
    np.testing.assert_array_equal(total, [1.0, 0.0])
    assert stats["reward/code_errors"] == 0


@pytest.fixture
def data_file():
    """A file anyone may read, as a benchmark's data on disk would be."""
    folder = tempfile.mkdtemp(prefix="r1jax-data-")
    os.chmod(folder, 0o755)
    path = os.path.join(folder, "answers.jsonl")
    with open(path, "w") as f:
        f.write('{"answer": "42"}\n')
    os.chmod(path, 0o644)
    yield path
    os.remove(path)
    os.rmdir(folder)


def test_cannot_read_project_source_or_data(contained, mode, data_file):
    source = os.path.abspath(sandbox.__file__)
    program = textwrap.dedent(f"""
        read = []
        for path in [{source!r}, {data_file!r}]:
            try:
                read.append(len(open(path).read()))
            except OSError:
                pass
        print(read)
    """)
    assert _run(program, [("", "[]")]) == 1.0


def test_cannot_see_host_processes(contained, mode):
    program = textwrap.dedent(f"""
        try:
            seen = len(open("/proc/{os.getpid()}/cmdline").read()) > 0
        except OSError:
            seen = False
        print(seen)
    """)
    assert _run(program, [("", "False")]) == 1.0


def test_disk_is_bounded_per_call(contained, mode, monkeypatch):
    cap = 1 << 20
    monkeypatch.setattr(sandbox, "DISK_BYTES", cap, raising=False)
    program = textwrap.dedent(f"""
        written = 0
        try:
            for i in range(8):
                with open(f"file{{i}}", "wb") as f:
                    f.write(b"x" * {cap // 2})
                written += {cap // 2}
        except OSError:
            pass
        print(written <= {cap})
    """)
    assert _run(program, [("", "True")]) == 1.0


def _hold_memory(children: int, mib: int) -> str:
    """A program whose children hold `mib` MiB each at once; prints whether all held it."""
    return textwrap.dedent(f"""
        import os, time
        r, w = os.pipe()
        pids = []
        for _ in range({children}):
            pid = os.fork()
            if pid == 0:
                block = b"x" * ({mib} << 20)
                os.write(w, b"1")
                time.sleep(10)
                os._exit(0)
            pids.append(pid)
        os.close(w)
        got = b""
        while len(got) < {children} and (chunk := os.read(r, {children})):
            got += chunk
        time.sleep(0.2)  # a child killed for memory has exited by now
        print(len(got) == {children} and all(os.waitpid(p, os.WNOHANG)[0] == 0 for p in pids))
    """)


def test_memory_is_bounded_per_call(contained, monkeypatch):
    rewards.run_code("", [("", "")])  # decides the sandbox mode
    if not (sandbox._isolated and sandbox._cgroups):
        pytest.skip("no cgroup here: the documented sandbox bounds memory per process only")
    monkeypatch.setattr(sandbox, "MEMORY_BYTES", 256 << 20)
    assert _run(_hold_memory(2, 60), [("", "True")]) == 1.0  # 120 MiB in all: fine
    assert _run(_hold_memory(3, 120), [("", "True")]) == 0.0  # each under the cap, not together


def test_weak_sandbox_hides_the_callers_environment(contained):
    """A caller that is not root, whose environment holds a secret: the program can read no
    process's environment (/proc/PID/environ), the caller's and its own parent's included."""
    if not _launcher.landlock_abi():
        pytest.skip("no Landlock here: the documented weak sandbox does not stop this")
    program = textwrap.dedent("""
        import os
        try:
            pids = [pid for pid in os.listdir("/proc") if pid.isdigit()]
        except OSError:
            pids = []
        found = False
        for pid in [os.getppid(), *pids]:
            try:
                found |= b"R1JAX_SECRET" in open(f"/proc/{pid}/environ", "rb").read()
            except OSError:
                pass
        print(found)
    """)
    caller = textwrap.dedent(f"""
        import ctypes, os
        from r1jax.rewards import sandbox
        if os.geteuid() == 0:  # become an ordinary user: no namespaces, so the weak sandbox
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE, as for any user's process
        print(sandbox.run_code({program!r}, [("", "False")], {TIMEOUT_S}), sandbox._isolated)
    """)
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.getcwd(), "R1JAX_SECRET": "x"}
    result = subprocess.run([sys.executable, "-c", caller], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.stdout.split() == ["1.0", "False"], result.stderr
