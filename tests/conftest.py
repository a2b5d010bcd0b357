"""Test-suite setup: eight fake CPU devices, so sharding is tested for real; shared fixtures.

XLA_FLAGS must be set before JAX initialises its backend, which is why this sits at the top of
the first file pytest imports.
"""

import os
import subprocess

import pytest

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs, where this machine lets the
    test mount one; skipped elsewhere."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
                      capture_output=True, check=False).returncode:
        pytest.skip("mounting a tmpfs needs root")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)
