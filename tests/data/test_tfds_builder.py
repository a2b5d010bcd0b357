import sys

import pytest

from r1jax.data import tasks, tfds_builder


@pytest.mark.parametrize("task", tasks.TASKS)
def test_round_trip_through_array_record_without_tensorflow(tmp_path, task):
    config = tfds_builder.ToyWorldConfig(
        name=f"{task}_small", task=task, train_size=300, test_size=40, seed=5
    )
    tfds_builder.build(tmp_path, [config])
    assert list((tmp_path / "toy_world" / config.name / "1.0.0").glob("*.array_record*"))
    for split, n in (("train", 300), ("test", 40)):
        loaded = tfds_builder.load_split(tmp_path, f"toy_world/{config.name}", split)
        assert loaded == tasks.make_split(task, split, n, seed=5)
    assert "tensorflow" not in sys.modules


def test_default_configs_are_one_per_task():
    assert [c.task for c in tfds_builder.ToyWorld.BUILDER_CONFIGS] == list(tasks.TASKS)
