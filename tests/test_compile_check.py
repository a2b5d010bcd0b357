"""The RL steps compiled for a TPU topology on this CPU (libtpu, no TPU): each process compiles
in its own subprocess, so libtpu never loads into the test process."""

import os
import subprocess
import sys

import pytest

from r1jax import compile_check, models

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = os.path.join(REPO, "experiments", "r1_zero_toy.py") + ":smoke"


def run_check(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "TPU_WORKER_HOSTNAMES": "localhost"}  # quiets libtpu's host lookup
    return subprocess.run([sys.executable, "-m", "r1jax.compile_check", *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module", autouse=True)
def libtpu():
    pytest.importorskip("libtpu", reason="the tpu extra (jax[tpu]) brings libtpu")


def test_the_toy_smoke_compiles_for_a_v5e_slice_and_fits():
    result = run_check(f"--config={TOY}", "--topology=v5e:2x2",
                       "--config.rl.prompts_per_step=4", "--config.rl.kl_coef=0.01")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4 x TPU v5 lite, mesh {'data': 4, 'fsdp': 1, 'tensor': 1}" in result.stdout
    names = [line.split("|")[1].strip() for line in result.stdout.splitlines()
             if line.startswith("| ")]
    # The fit table, then the bounds table with the whole RL step's row.
    assert names == ["step", "sample", "reference", "update", "per RL step, per chip", "sample",
                     "reference", "update", "RL step"]
    assert "does not fit" not in result.stdout


def test_a_step_too_large_for_the_slice_is_reported_with_what_to_turn():
    # 16,384 rollout rows of 256 new tokens in one microbatch: the update's temporaries need
    # about 23 GiB per 16 GiB v5e chip, and XLA refuses to compile it.
    result = run_check(f"--config={TOY}", "--topology=v5e:2x2",
                       "--config.rl.prompts_per_step=256", "--config.rl.group_size=64",
                       "--config.rl.max_new_tokens=256")
    assert result.returncode == 1, result.stderr[-3000:]
    assert "update does not fit: RESOURCE_EXHAUSTED" in result.stdout
    assert "rl.microbatches" in result.stdout and "sample does not fit" not in result.stdout


def test_a_batch_that_does_not_split_over_the_slice_is_one_sentence():
    result = run_check(f"--config={TOY}", "--topology=v5e:2x2")
    assert result.returncode == 1
    assert result.stderr.strip().endswith(
        "r1jax.compile_check: prompts_per_step=2 does not split over the mesh's 4 data-parallel "
        "devices")


def test_the_fit_report_adds_up_the_parts_against_the_chip():
    chip = compile_check.Chip(hbm_bytes=100, bf16_flops=1e9, hbm_bytes_per_s=1e6)
    fits = compile_check.StepReport("sample", 10, 5, 20, 0, 55, 2e6, 4e3)  # peak 90: 90% of HBM
    over = compile_check.StepReport("update", 40, 40, 10, 40, 41, 1e6, 1e3)  # peak 91
    assert (fits.peak, over.peak) == (90, 91)
    table, ok = compile_check.fit_report([fits], {}, chip)
    assert ok and "| 90% | 0.0 | 2.0 ms | 4.0 ms |" in table
    table, ok = compile_check.fit_report([fits, over], {}, chip)
    assert not ok and "update does not fit" in table and "sample does not fit" not in table


def test_step_bounds_scale_each_program_to_the_whole_rl_step():
    cfg = models.get_config("tiny")
    chip = compile_check.Chip(hbm_bytes=1 << 40, bf16_flops=1e12, hbm_bytes_per_s=1e9)
    shape = compile_check.StepShape(prompts=4, samples=2, prompt_len=8, new_tokens=4, devices=2,
                                    minibatches=2, microbatches=4, epochs=3, share=1)
    reports = [compile_check.StepReport("sample", 0, 0, 0, 0, 0, 1e9, 2e6),
               compile_check.StepReport("reference", 0, 0, 0, 0, 0, 1e9, 1e3),
               compile_check.StepReport("update", 0, 0, 0, 0, 0, 1e9, 5e6)]
    bounds = {b[0]: b[1:] for b in compile_check.step_bounds(cfg, shape, reports, chip, 2)}
    # The reference runs once per microbatch of each minibatch: 8 programs, flops-bound here.
    assert bounds["reference"][1:] == (8e9, 8e3, pytest.approx(8e-3))
    # The update's program holds two microbatches: 2 of them per minibatch and epoch, and the
    # bandwidth bound (5 MB at 1 GB/s, 12 times) is the larger.
    assert bounds["update"][1:] == (12e9, 60e6, pytest.approx(60e-3))
    # Training is three forward passes per epoch over every row, the reference one.
    assert bounds["update"][0] == pytest.approx(3 * shape.epochs * bounds["reference"][0])
    # The sampler adds three decode steps, each reading all weights (bf16) and the KV cache of
    # its device's 4 rows x 12 positions, to the program's prefill and first decode step.
    kv = 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * 2 * 4 * 12
    assert bounds["sample"][2] == pytest.approx(2e6 + 3 * (models.num_params(cfg) * 2 + kv))
    table = compile_check.bounds_report(list(compile_check.step_bounds(
        cfg, shape, reports, chip, 2)), chip)
    assert table.splitlines()[-1].startswith("| RL step |")
