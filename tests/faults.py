"""Damage that tests inflict on files (tests/test_checkpoint.py, tests/test_reliability.py);
the full disk is conftest.py's `small_disk` fixture."""

import os


def largest_file(folder) -> str:
    """The largest file under ``folder``: in a checkpoint step, array data."""
    files = [os.path.join(root, name) for root, _, names in os.walk(folder) for name in names]
    return max(files, key=os.path.getsize)


def flip_four_bytes(path) -> None:
    """Invert four bytes in the middle of the file ``path``, as failing storage might."""
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        middle = len(data) // 2
        data[middle:middle + 4] = bytes(b ^ 0xFF for b in data[middle:middle + 4])
        f.seek(0)
        f.write(data)
