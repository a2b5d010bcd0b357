"""Device meshes with the axes ("data", "fsdp", "tensor")."""

import os

import jax
import numpy as np
from jax.sharding import Mesh

from r1jax.models.sharding import BATCH_AXES

AXES = ("data", "fsdp", "tensor")


def make_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1, devices=None) -> Mesh:
    """A Mesh over ``devices`` (all by default); one axis size may be -1 for "the rest".

    Built with ``jax.sharding.Mesh`` so the axes are Auto (``jax.make_mesh`` defaults to
    Explicit axes, which the partition rules here do not use).
    """
    devices = jax.devices() if devices is None else devices
    sizes = [data, fsdp, tensor]
    if sizes.count(-1) > 1:
        raise ValueError(f"at most one mesh axis may be -1, got {dict(zip(AXES, sizes))}")
    known = int(np.prod([s for s in sizes if s != -1]))
    if -1 in sizes:
        if len(devices) % known:
            raise ValueError(f"{len(devices)} devices do not divide into mesh "
                             f"{dict(zip(AXES, sizes))}")
        sizes[sizes.index(-1)] = len(devices) // known
    if int(np.prod(sizes)) != len(devices):
        raise ValueError(f"mesh {dict(zip(AXES, sizes))} needs {int(np.prod(sizes))} devices, "
                         f"have {len(devices)}")
    return Mesh(np.asarray(devices).reshape(sizes), AXES)


def mesh_from_config(mesh_config) -> Mesh:
    """The mesh of an experiment's ``mesh`` section (axis sizes), announced on stdout."""
    mesh = make_mesh(**mesh_config)
    print(f"mesh {dict(mesh.shape)} over {mesh.size} {mesh.devices.flat[0].platform} device(s)",
          flush=True)
    return mesh


def data_parallel_size(mesh: Mesh) -> int:
    """How many ways a batch is split over ``mesh``: the product of its data-parallel axes."""
    return int(np.prod([mesh.shape[a] for a in BATCH_AXES]))


def default_cpu_devices() -> int:
    """The CPU devices a command splits the host into unless told (``--cpu_devices``): the
    largest power of two up to the cores this process may run on, at most 8. Powers of two,
    because the configs' batch sizes are; at most 8, because the toy experiments' batches (8
    prompts) must split over them."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return 1 << (min(cores or 1, 8).bit_length() - 1)


def use_cpu_devices(count: int) -> None:
    """Split the host CPU into ``count`` JAX devices; call it before anything starts a backend.

    XLA:CPU runs one computation on one core, so a data-parallel mesh over ``count`` CPU devices
    is how a CPU-only machine uses ``count`` cores. Accelerator backends are unaffected.
    """
    if count < 1:
        raise ValueError(f"--cpu_devices must be at least 1, got {count}")
    jax.config.update("jax_num_cpu_devices", count)


def use_default_cpu_devices() -> None:
    """``use_cpu_devices(default_cpu_devices())``, unless XLA_FLAGS already sets the CPU device
    count or this process has started JAX (it then keeps the devices it has)."""
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return
    try:
        use_cpu_devices(default_cpu_devices())
    except RuntimeError:  # JAX's refusal once a backend is initialised
        pass


def check_batch_split(key: str, batch_size: int, microbatches: int, mesh) -> None:
    """A training job's batch (the config key ``key``) splits into ``microbatches`` over the
    mesh's data-parallel devices; otherwise an error naming the key, before anything compiles."""
    size = data_parallel_size(mesh)
    if batch_size % (size * microbatches):
        raise ValueError(f"{key}={batch_size} does not split into microbatches={microbatches} x "
                         f"the mesh's {size} data-parallel devices")
