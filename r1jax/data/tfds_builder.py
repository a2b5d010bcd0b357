"""The toy world as a tensorflow-datasets dataset in array_record files, without TensorFlow.

    build(data_dir)              # writes toy_world/arithmetic and toy_world/countdown
    test = load_split(data_dir, "toy_world/countdown", "test")   # list of dicts, as make_split

What works without TensorFlow (tfds 4.9): a `GeneratorBasedBuilder` prepared with
`file_format="array_record"` writes, provided it describes itself with `tfds.core.DatasetInfo`
(`dataset_info_from_configs` looks for metadata files beside the module) and has no `code_path`
(below); `tfds.data_source` reads the files back, with or without the builder class imported.
`as_dataset` needs TensorFlow and is not used. Examples are written in generation order
(`disable_shuffling=True`), so a split reads back exactly as `make_split` made it.
"""

from __future__ import annotations

import dataclasses
import os
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds

from r1jax.data.benchmarks import plain
from r1jax.data.tasks import LEVELS, TASKS, make_split


@dataclasses.dataclass
class ToyWorldConfig(tfds.core.BuilderConfig):
    """One task's splits: `train_size` and `test_size` examples from `seed`."""

    task: str = "arithmetic"
    train_size: int = 20_000
    test_size: int = 1_000
    seed: int = 0


class ToyWorld(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS: ClassVar = [ToyWorldConfig(name=task, task=task) for task in TASKS]
    # Where tfds looks for a checksums file. Finding this module's path needs the
    # importlib_resources backport, which tfds does not declare; there is nothing to download.
    code_path = None

    def _info(self) -> tfds.core.DatasetInfo:
        task = self.builder_config.task
        text = tfds.features.Text()
        features = {"id": text, "task": text, "level": np.int32, "question": text, "answer": text}
        if task == "countdown":
            features |= {"numbers": tfds.features.Sequence(np.int32), "target": np.int32}
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"The r1jax toy world's {task} problems, levels {LEVELS}.",
            features=tfds.features.FeaturesDict(features),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # generated, nothing to download
        config = self.builder_config
        sizes = {"train": config.train_size, "test": config.test_size}
        return {split: self._generate_examples(split, n) for split, n in sizes.items()}

    def _generate_examples(self, split: str, n: int):
        for example in make_split(self.builder_config.task, split, n, self.builder_config.seed):
            yield example["id"], example


def build(data_dir: str | os.PathLike, configs=ToyWorld.BUILDER_CONFIGS) -> None:
    """Writes each ToyWorldConfig in `configs` under `data_dir`; one already there is kept."""
    for config in configs:
        builder = ToyWorld(config=config, data_dir=os.fspath(data_dir), file_format="array_record")
        builder.download_and_prepare()


def load_split(data_dir: str | os.PathLike, name: str, split: str) -> list[dict]:
    """Split `split` of the tfds dataset `name` ("toy_world/countdown") under `data_dir`, as
    plain dicts (str, int, list of int)."""
    source = tfds.data_source(name, data_dir=os.fspath(data_dir), split=split)
    return [{k: plain(v) for k, v in ex.items()} for ex in source.__getitems__(range(len(source)))]
