"""Paths that may name cloud storage (``gs://bucket/run``) as well as local files.

A run's own files go through etils.epath, as orbax's do. What is read by libraries that open
local files only (sentencepiece, safetensors, the HF loaders) is read from a local copy.
"""

import tempfile
from pathlib import Path

from etils import epath

_COPIES: dict[str, Path] = {}  # cloud path -> its local copy, for this process's lifetime


def is_cloud_path(path) -> bool:
    """Whether ``path`` names cloud storage (gs://, s3://), not a local file."""
    return "://" in str(path)


def local_copy(path) -> Path:
    """``path`` itself when local; else a local copy of the file or directory tree it names,
    made once per process."""
    if not is_cloud_path(path):
        return Path(path)
    if str(path) not in _COPIES:
        source = epath.Path(path)
        target = Path(tempfile.mkdtemp(prefix="r1jax-")) / source.name
        _copy(source, target)
        _COPIES[str(path)] = target
    return _COPIES[str(path)]


def upload(local: Path, destination) -> None:
    """Copy the local file or directory tree ``local`` to ``destination`` (local or cloud)."""
    _copy(epath.Path(local), epath.Path(destination))


def _copy(source, target) -> None:
    if source.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        for child in source.iterdir():
            _copy(child, target / child.name)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
