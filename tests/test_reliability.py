"""Faults a user or the machine inflicts on a run, through the command line as users meet them:
each must end in its defined outcome (one sentence naming the key or file and exit status 1,
or a resumed run), never in a traceback or in a run that goes on with broken parts.

The checkpointer's own faults (each kind of damage, a kill mid-save, a full disk) are unit-tested
in tests/test_checkpoint.py, the sandbox's escapes in tests/rewards/test_sandbox.py and the
rewards' input bounds in tests/rewards/test_input_bounds.py; here they are seen end to end.
"""

import os
import subprocess
import sys

import pytest


from r1jax import metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.append(os.path.join(REPO, "tests"))  # --import-mode=importlib adds none
from faults import flip_four_bytes, largest_file  # noqa: E402
SMOKE = os.path.join(REPO, "experiments", "r1_zero_toy.py") + ":smoke"
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "", "PYTHONPATH": REPO}


def r1jax_main(workdir, *args, config=SMOKE, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "r1jax.main", f"--config={config}", f"--workdir={workdir}",
         "--config.rl.eval_every=0", *args],
        env=ENV, text=True, capture_output=True, timeout=timeout, cwd=REPO, check=False)


def assert_one_sentence(result, *words):
    """Exit status 1, and stderr one line from r1jax.main naming ``words``, no traceback."""
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("r1jax.main: "), result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


@pytest.mark.parametrize("args, words", [
    (["--config.rl.group_size=1"], ["config.rl.group_size", "at least 2"]),
    (["--config.rl.steps=0"], ["config.rl.steps must be at least 1"]),
    (["--config.rl.prompts_per_step=-2"], ["config.rl.prompts_per_step must be at least 1"]),
    (["--config.reward_timeout_s=0"], ["config.reward_timeout_s must be more than 0"]),
    (["--config.rewards.format=nan"], ["config.rewards.format must be a finite number"]),
    (["--config.rl.top_p=1.5"], ["config.rl.top_p must be in (0, 1]"]),
    (["--cpu_devices=2", "--config.rl.prompts_per_step=3"],
     ["prompts_per_step=3", "2 data-parallel devices"]),
    (["--config.model.vocab_size=128"], ["config.model.vocab_size=128", "tokenizer"]),
])
def test_a_config_no_run_can_use_is_one_sentence_before_training(tmp_path, args, words):
    result = r1jax_main(tmp_path / "run", *args)
    assert_one_sentence(result, *words)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_workdir_that_is_a_file_is_one_sentence(tmp_path):
    workdir = tmp_path / "file"
    workdir.write_text("not a folder")
    assert_one_sentence(r1jax_main(workdir), str(workdir), "is a file")


def test_an_experiment_file_with_a_syntax_error_is_one_sentence(tmp_path):
    experiment = tmp_path / "broken.py"
    experiment.write_text("def get_config(:\n    pass\n")
    assert_one_sentence(r1jax_main(tmp_path / "run", config=str(experiment)),
                        str(experiment), "line 1")


PROMPTS_EXPERIMENT = f"""
from r1jax.cli import load_experiment


def get_config(path):
    config = load_experiment({SMOKE.rsplit(":", 1)[0]!r}, "smoke")
    config.data.sources = [{{"path": path, "format": "prompt", "reward": "arithmetic"}}]
    return config
"""


@pytest.mark.parametrize("content, words", [
    (b'{"prompt": "1 + 1", "answer": "2"}\n["a", "list"]\n', ["line 2", "a JSON list"]),
    (b'{"prompt": "1 + 1", "answer": "2"}\n{"prompt": "caf\xe9", "answer": "1"}\n',
     ["not UTF-8"]),
    (b'{"prompt": "1 + 1", "answer": null}\n', ["line 1", "'answer' is empty (null)"]),
])
def test_a_bad_data_file_is_one_sentence_naming_it(tmp_path, content, words):
    data = tmp_path / "prompts.jsonl"
    data.write_bytes(content)
    experiment = tmp_path / "experiment.py"
    experiment.write_text(PROMPTS_EXPERIMENT)
    result = r1jax_main(tmp_path / "run", config=f"{experiment}:{data}")
    assert_one_sentence(result, str(data), *words)




def test_a_damaged_newest_checkpoint_is_skipped_and_the_run_finishes_from_the_one_before(
        tmp_path):
    """Today's reference failure: four flipped bytes in the newest step loaded NaN parameters,
    skipped every update, wrote no checkpoint and exited 0."""
    first = r1jax_main(tmp_path, "--config.rl.steps=3", "--config.rl.checkpoint_every=2")
    assert first.returncode == 0, first.stdout + first.stderr
    flip_four_bytes(largest_file(tmp_path / "checkpoints" / "3" / "state"))
    rerun = r1jax_main(tmp_path, "--config.rl.steps=4", "--config.rl.checkpoint_every=2")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "skipping checkpoint step 3" in rerun.stdout and "checksum" in rerun.stdout
    assert "resumed at step 2" in rerun.stdout
    assert os.listdir(tmp_path / "damaged_checkpoints") == ["3"]
    logged = metrics.read_metrics(tmp_path / "metrics.jsonl")
    assert [m["step"] for m in logged] == [1, 2, 3, 4]
    assert all(m["updates/skipped"] == 0 for m in logged)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2", "4"]  # 4 the last, 2 on cadence


def test_a_full_disk_stops_the_run_in_one_sentence_and_the_process_exits(small_disk):
    """Whichever writer meets the full disk first (the checkpoint, the metrics, TensorBoard,
    the samples), the run stops with its cause; none of orbax's or asyncio's reports of the
    failed save's other writes, and no hang at exit (the timeout)."""
    result = r1jax_main(small_disk / "run", "--config.rl.steps=3",
                        "--config.rl.checkpoint_every=1", timeout=240)
    assert_one_sentence(result, "No space left on device")
    assert "saving step 1" in result.stderr or "writing " in result.stderr, result.stderr


class Tokenizer:
    """The fields `policy.check_tokenizer` reads, of a tokenizer that fits a 128-row embedding
    unless told otherwise."""
    vocab_size, bos_id, eos_id, pad_id = 128, None, 1, 0


@pytest.mark.parametrize("field, value, words", [
    ("vocab_size", 512, ["has 512 ids", "128 rows"]),
    ("eos_id", 300, ["eos_id 300", "128-row embedding"]),
    ("pad_id", 128, ["pad_id 128"]),
])
def test_a_tokenizer_that_does_not_fit_the_embedding_is_refused(field, value, words):
    from r1jax import models, policy

    cfg = models.get_config("tiny", vocab_size=128)
    policy.check_tokenizer(cfg, Tokenizer(), "fits")
    bad = Tokenizer()
    setattr(bad, field, value)
    with pytest.raises(ValueError) as error:
        policy.check_tokenizer(cfg, bad, "tok")
    for word in words:
        assert word in str(error.value)
