"""r1jax.files: local copies of (cloud) paths and uploads; a local directory stands in for a
bucket, with `is_cloud_path` told that it is one."""

import os
from pathlib import Path

import numpy as np

from r1jax import files, main, metrics, models, policy

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_local_paths_are_used_in_place(tmp_path):
    assert files.local_copy(tmp_path / "x") == tmp_path / "x"
    assert files.is_cloud_path("gs://bucket/run") and not files.is_cloud_path(tmp_path)


def test_a_cloud_tree_is_copied_once_and_uploads_round_trip(tmp_path, monkeypatch):
    source = tmp_path / "bucket" / "base"
    (source / "sub").mkdir(parents=True)
    (source / "config.json").write_text("{}")
    (source / "sub" / "weights.bin").write_bytes(bytes(range(256)))
    monkeypatch.setattr(files, "is_cloud_path", lambda path: True)
    copy = files.local_copy(source)
    assert copy != source and copy.name == "base"
    assert (copy / "config.json").read_text() == "{}"
    assert (copy / "sub" / "weights.bin").read_bytes() == bytes(range(256))
    (source / "config.json").write_text("changed")
    assert files.local_copy(source) == copy  # once per process
    files.upload(copy, tmp_path / "bucket" / "again")
    assert (tmp_path / "bucket" / "again" / "sub" / "weights.bin").read_bytes() == bytes(range(256))
    assert isinstance(copy, Path)


def test_the_toy_rl_job_in_a_cloud_workdir_writes_through_copies(tmp_path, monkeypatch):
    # Every path is taken for cloud storage: metrics.jsonl is rewritten per step, the toy
    # tokenizer is trained elsewhere and uploaded, then read from a local copy; the export is
    # written elsewhere and copied in.
    monkeypatch.setattr(files, "is_cloud_path", lambda path: True)
    workdir = tmp_path / "bucket" / "run"
    main.main([f"--config={os.path.join(REPO, 'experiments', 'r1_zero_toy.py')}:smoke",
               f"--workdir={workdir}", "--config.rl.prompts_per_step=8",  # 8 test devices
               "--config.rl.steps=2", "--config.rl.eval_every=0"])
    assert [r["step"] for r in metrics.read_metrics(workdir / "metrics.jsonl")] == [1, 2]
    assert (workdir / "tokenizer.model").is_file()
    assert files.local_copy(workdir / "tokenizer.model") != workdir / "tokenizer.model"
    cfg, exported = models.load_hf(str(workdir / "hf"))
    _, trained = policy.load_policy(workdir)
    np.testing.assert_array_equal(exported["embed"]["embedding"], trained["embed"]["embedding"])
    assert (workdir / "hf" / "tokenizer.model").read_bytes() == \
        (workdir / "tokenizer.model").read_bytes()
