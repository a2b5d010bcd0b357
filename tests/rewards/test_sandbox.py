import os
import socket
import tempfile
import time

import numpy as np
import pytest

from r1jax import rewards
from r1jax.rewards import sandbox

ADD = "a, b = map(int, input().split())\nprint(a + b)\n"
TESTS = [("1 2\n", "3\n"), ("10 20\n", "30")]
TIMEOUT_S = 1.5
MARGIN_S = 0.5


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
    return {d for d in os.listdir(tempfile.gettempdir()) if d.startswith("r1jax-sandbox-")}


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
    assert time.monotonic() - start < TIMEOUT_S + MARGIN_S
    return score


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
