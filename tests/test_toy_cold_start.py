"""The `cold_start_data` job: R1's cold-start SFT set for the toy world, checked against the
examples it names (rebuilt here with make_split) and the rewards that judge it."""

import math
import os

import ml_collections
import numpy as np
import pytest

from r1jax import cli, rewards, toy
from r1jax.data import records, tasks
from r1jax.data.languages import EN, KALO
from r1jax.rewards.language import think_part
from r1jax.templates import r1_zero_prompt

EXPERIMENT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "experiments", "aha_tiny.py")
EXAMPLES = 400


def make_config(examples=EXAMPLES, seed=1, all_tasks=True):
    """aha_tiny's smoke world posed in English and Kalo (with every task: each has its own long
    work and summary), and a cold_start section."""
    config = cli.load_experiment(EXPERIMENT, "smoke")
    config.data.languages = (EN, KALO)
    if all_tasks:
        config.data.tasks = tasks.TASKS
    config.cold_start = ml_collections.ConfigDict(dict(examples=examples, seed=seed,
                                                       slip_fraction=0.3))
    return config


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("cold_start")
    assert toy.cold_start_job(make_config(), str(workdir))
    return workdir


@pytest.fixture(scope="module")
def rows(workdir):
    return records.read_sft_records(str(workdir / "data.jsonl"))


def examples_by_id(config):
    """Every example the job may draw from, by id: make_split's first examples do not depend on
    how many are asked for."""
    d, c = config.data, config.cold_start
    return {e["id"]: e for task in d.tasks
            for e in tasks.make_split(task, "train", c.examples, c.seed, levels=tuple(d.levels),
                                      languages=tuple(d.languages))}


def test_records_are_readable_right_and_in_their_examples_language(rows):
    examples = examples_by_id(make_config())
    assert len(rows) == EXAMPLES
    by_task = {task: 0 for task in tasks.TASKS}
    for row in rows:
        example = examples[row["source"]["example"]]
        assert row["source"] == {"stage": "cold_start_data", "example": example["id"],
                                 "lang": example["lang"]}
        assert row["prompt"] == r1_zero_prompt(example["question"])
        completion = row["completion"]
        assert rewards.get("summary_format")([completion], [example])[0] == 1.0
        assert rewards.get(tasks.REWARDS[example["task"]])([completion], [example])[0] == 1.0
        consistency = rewards.language_consistency([think_part(completion)], example["lang"])
        assert consistency[0] >= 0.99
        by_task[example["task"]] += 1
    # The tasks in equal shares, but for the last one's rounding.
    assert by_task == {task: n for task, n in zip(
        tasks.TASKS, [math.ceil(EXAMPLES / 3)] * 2 + [EXAMPLES - 2 * math.ceil(EXAMPLES / 3)])}
    # Languages drawn uniformly: the Kalo share is 1/2 within 4 standard deviations.
    kalo = np.mean([row["source"]["lang"] == KALO for row in rows])
    assert abs(kalo - 0.5) < 4 * (0.25 / EXAMPLES) ** 0.5


def test_the_problems_are_not_the_rl_prompts(rows):
    """cold_start.seed, not data.seed, draws them."""
    rl_prompts = {e["id"] for e in toy.train_examples(make_config().data)}
    assert not rl_prompts & {row["source"]["example"] for row in rows}


def test_the_report_counts_records_and_languages(workdir, rows):
    report = (workdir / "report.md").read_text()
    kalo = sum(row["source"]["lang"] == KALO for row in rows)
    assert f"{EXAMPLES} records" in report and "2 languages" in report
    assert f"en: {EXAMPLES - kalo}, kalo: {kalo}" in report


def test_deterministic_and_skipped_when_done(workdir, tmp_path, capsys):
    again = tmp_path / "again"
    assert toy.cold_start_job(make_config(), str(again))
    assert (again / "data.jsonl").read_bytes() == (workdir / "data.jsonl").read_bytes()
    other = tmp_path / "other"
    toy.cold_start_job(make_config(seed=2), str(other))
    assert (other / "data.jsonl").read_bytes() != (workdir / "data.jsonl").read_bytes()
    (again / "data.jsonl").write_text("{}\n")
    capsys.readouterr()
    assert toy.cold_start_job(make_config(), str(again))
    assert "exists, skipped" in capsys.readouterr().out
    assert (again / "data.jsonl").read_text() == "{}\n"


def test_english_alone_the_smoke_world_as_it_is(tmp_path):
    config = make_config(examples=10, all_tasks=False)
    del config.data.languages
    assert toy.cold_start_job(config, str(tmp_path))
    rows = records.read_sft_records(str(tmp_path / "data.jsonl"))
    assert len(rows) == 10 and {row["source"]["lang"] for row in rows} == {EN}
    assert all(row["source"]["example"].startswith("sums/train/1/") for row in rows)
