"""Benchmarks read from tfds data sources (array_record, no TensorFlow): the toy world as
r1jax.data.tfds_builder writes it, published columns through the same parsing as their files, and
the error for a dataset that is not there."""

import dataclasses
import functools
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from r1jax import evaluate, main, rewards
from r1jax.data import benchmarks as benchmarks_data
from r1jax.data import tasks, tfds_builder
from r1jax.data.benchmarks import BENCHMARKS
from r1jax.templates import r1_zero_prompt

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
EXPERIMENTS = Path(__file__).parent.parent / "experiments"


@dataclasses.dataclass
class RowsConfig(tfds.core.BuilderConfig):
    file: str = ""


class PublishedRows(tfds.core.GeneratorBasedBuilder):
    """A JSONL fixture as a tfds dataset with its columns (str, or int64), as a benchmark's
    release converted to tfds would hold them; written the way tfds_builder writes the toy world."""

    VERSION = tfds.core.Version("1.0.0")
    code_path = None

    def _rows(self):
        return benchmarks_data.read_records(FIXTURES / self.builder_config.file)

    def _info(self):
        features = {k: tfds.features.Text() if isinstance(v, str) else np.int64
                    for k, v in self._rows()[0].items()}
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features),
                                     disable_shuffling=True)

    def _split_generators(self, dl_manager):
        return {"test": self._generate_examples()}

    def _generate_examples(self):
        yield from enumerate(self._rows())


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    tfds_builder.build(data_dir, [
        tfds_builder.ToyWorldConfig(name="sums_small", task="sums", train_size=20, test_size=30,
                                    seed=3),
        tfds_builder.ToyWorldConfig(name="countdown_small", task="countdown", train_size=1,
                                    test_size=4, seed=3)])
    return data_dir


def test_a_toy_benchmark_reads_what_tfds_builder_wrote(toy_dir):
    load = functools.partial(benchmarks_data.load, "toy_sums", toy_dir)
    made = tasks.make_split("sums", "test", 30, seed=3)
    assert load(path="tfds:toy_world/sums_small") == made  # the test split, all of it when n=0
    assert load(path="tfds:toy_world/sums_small:test", n=12) == made[:12] == tasks.make_split(
        "sums", "test", 12, seed=3)
    assert load(path="tfds:toy_world/sums_small:test[:5]") == made[:5]
    assert load(path="tfds:toy_world/sums_small:train") == tasks.make_split("sums", "train", 20, 3)
    # Levels filter the rows, then n of them are taken; example i is at level LEVELS[i % 4].
    assert load(path="tfds:toy_world/sums_small", levels=(2, 4), n=5) == [
        made[1], made[3], made[5], made[7], made[9]]
    countdown = benchmarks_data.load("toy_countdown", toy_dir,
                                     path="tfds:toy_world/countdown_small")
    assert countdown == tasks.make_split("countdown", "test", 4, seed=3)
    judge = functools.partial(rewards.judge, BENCHMARKS["toy_countdown"].reward)
    assert all(judge(f"<answer>{p['answer']}</answer>", p)[0]
               for p in countdown)
    with pytest.raises(ValueError, match="a 'countdown' problem, not a 'sums' one"):
        load(path="tfds:toy_world/countdown_small")
    assert "tensorflow" not in sys.modules


def test_the_training_loop_evaluates_on_a_tfds_source(toy_dir):
    config = main.load_experiment(str(EXPERIMENTS / "aha_tiny.py"))  # levels 1 and 2
    config.eval.update(data_file="tfds:toy_world/sums_small", data_dir=str(toy_dir), n_problems=6)
    problems = evaluate.held_out_problems(config, config.eval.benchmark)
    made = [p for p in tasks.make_split("sums", "test", 30, seed=3) if p["level"] in (1, 2)]
    assert [{k: v for k, v in p.items() if k != "prompt"} for p in problems] == made[:6]
    assert all(p["prompt"] == r1_zero_prompt(p["question"]) for p in problems)
    config.eval.update(data_file="tfds:toy_world/no_such_set")
    with pytest.raises(FileNotFoundError, match="no_such_set"):
        evaluate.held_out_problems(config, config.eval.benchmark)


def without_ids(problems):
    return [{k: v for k, v in p.items() if k != "id"} for p in problems]


@pytest.mark.parametrize("name, first_id", [("math500", "test/prealgebra/1.json"),  # unique_id
                                            ("gsm8k", "gsm8k:test/0")])  # none: source/row
def test_published_columns_in_tfds_are_parsed_as_their_file_is(tmp_path, name, first_id):
    PublishedRows(config=RowsConfig(name=name, file=f"{name}.jsonl"), data_dir=os.fspath(tmp_path),
                  file_format="array_record").download_and_prepare()
    problems = benchmarks_data.load(name, tmp_path, path=f"tfds:published_rows/{name}")
    assert without_ids(problems) == without_ids(benchmarks_data.load(name, FIXTURES))
    assert problems[0]["id"] == first_id
    assert benchmarks_data.load(name, tmp_path, path=f"tfds:published_rows/{name}:test",
                                n=1) == problems[:1]


@pytest.mark.parametrize("name, dataset", [("toy_sums", "toy_world/sums"),  # a registered class
                                           ("toy_sums", "toy_world/no_such_config"),
                                           ("gsm8k", "gsm8k")])  # a name tfds does not know
def test_a_missing_tfds_dataset_is_an_error_naming_it_the_directory_and_the_format(
        tmp_path, name, dataset):
    with pytest.raises(FileNotFoundError) as e:
        benchmarks_data.load(name, tmp_path, path=f"tfds:{dataset}:test")
    assert (f"no data for benchmark {name!r}: no prepared tfds dataset {dataset!r} in {tmp_path}"
            in str(e.value))
    assert BENCHMARKS[name].columns in str(e.value)


def test_the_command_line_reads_tfds_through_data_file(tmp_path):
    with pytest.raises(SystemExit, match="no prepared tfds dataset 'toy_world/sums'"):
        evaluate.main([f"--checkpoint={tmp_path}", "--benchmark=toy_sums",
                       f"--data_dir={tmp_path}", "--data_file=tfds:toy_world/sums",
                       f"--out={tmp_path / 'x.json'}"])
