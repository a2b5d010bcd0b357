"""Test-suite setup: eight fake CPU devices, so sharding is tested for real.

XLA_FLAGS must be set before JAX initialises its backend, which is why this sits at the top of
the first file pytest imports.
"""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
