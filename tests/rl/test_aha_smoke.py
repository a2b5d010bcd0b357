"""The README's main job in miniature: experiments/aha_tiny.py:smoke end to end in a subprocess."""

import os
import signal
import subprocess
import sys
import time

import numpy as np

from r1jax import main as r1jax_main
from r1jax import metrics

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMOKE = os.path.join(REPO, "experiments", "aha_tiny.py") + ":smoke"
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}  # one CPU device, as users run it
OUTPUTS = ("tokenizer.model", "base/config.json", "pretrain/metrics.jsonl", "metrics.jsonl",
           "results.md", "eval.png", "length.png", "reflection.png", "reward.png")
COMMAND = (sys.executable, "-m", "r1jax.main", f"--config={SMOKE}")


def run(workdir):
    result = subprocess.run([*COMMAND, f"--workdir={workdir}"], env=ENV, capture_output=True,
                            text=True, timeout=600, check=False)  # the assert shows the output
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def sigterm_during_pretraining(workdir):
    proc = subprocess.Popen([*COMMAND, f"--workdir={workdir}"], env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log = workdir / "pretrain" / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while not (log.exists() and metrics.read_metrics(log)) and proc.poll() is None:
        assert time.monotonic() < deadline, "pretraining did not start in time"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    return proc.returncode, out


def test_tokenizer_pretraining_rl_evaluation_and_report_and_the_reward_rises(tmp_path):
    # SIGTERM during pretraining checkpoints it and exits STOPPED_EXIT without a base model; a
    # rerun resumes.
    code, out = sigterm_during_pretraining(tmp_path)
    assert code == r1jax_main.STOPPED_EXIT, out
    assert not (tmp_path / "base").exists()
    interrupted = len(metrics.read_metrics(tmp_path / "pretrain" / "metrics.jsonl"))
    assert interrupted < 300

    out = run(tmp_path)
    assert "pretraining the base model" in out
    steps = [h["step"] for h in metrics.read_metrics(tmp_path / "pretrain" / "metrics.jsonl")]
    assert steps == list(range(1, 301))
    for name in OUTPUTS:
        assert (tmp_path / name).is_file(), name
    assert "test pass@1" in (tmp_path / "results.md").read_text()
    history = metrics.read_metrics(tmp_path / "metrics.jsonl")
    reward = np.array([h["reward/total"] for h in history])
    third = len(reward) // 3
    assert reward[-third:].mean() > reward[:third].mean() + 0.1, reward

    # A second run in the same workdir reuses the tokenizer and base model and resumes RL.
    base_files = {p: os.path.getmtime(tmp_path / p) for p in ("tokenizer.model", "base/config.json")}
    out = run(tmp_path)
    assert "pretraining the base model" not in out
    assert base_files == {p: os.path.getmtime(tmp_path / p) for p in base_files}
    assert len(metrics.read_metrics(tmp_path / "metrics.jsonl")) == len(history)
