"""r1jax.files: local copies of (cloud) paths and uploads; a local directory stands in for a
bucket, with `is_cloud_path` told that it is one."""

from pathlib import Path

from r1jax import files


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
