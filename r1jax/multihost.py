"""Runs that span processes (TPU pod slices, GPU or CPU clusters): joining the job, and moving
batches between each process's rows and the global arrays the jitted steps see.

Every process runs the same program (JAX's multi-controller model). A batch dimension split
over the mesh's data axes (`models.batch_sharding`) is cut into row blocks, one per process (a
process's devices hold consecutive rows: `make_mesh` orders devices as `jax.devices()` does,
process by process). Each process reads its own block of prompts, its rows are assembled into
the global batch (`put_rows`), and the sampler's outputs come back as each process's own rows
(`local_rows`), decoded and scored where they live; what every process needs whole (a
rollout's rewards for group advantages, evaluation records for the summary) is exchanged with
`allgather` (`gather_blocks`). With one process each of these is the identity, so a
single-host run is the special case of a multi-host one, not another path.

Only process 0 writes the run's files (metrics, samples, plots, results, exports): `is_primary`.
Checkpoints are written by every process through orbax, which coordinates them.
"""

import os
import pickle
from pathlib import Path

import jax
import numpy as np
from jax.experimental import multihost_utils

from r1jax.mesh import data_parallel_size
from r1jax.models.sharding import batch_sharding


def initialize(coordinator_address: str = "", num_processes: int = 0, process_id: int = -1,
               heartbeat_timeout_s: int = 100) -> None:
    """Join the job's other processes, when it has any; call it before any JAX computation.

    On a Cloud TPU VM (a host with TPU chips) JAX finds the slice's hosts itself, from the VM's
    metadata (or TPU_WORKER_HOSTNAMES, when it lists several); elsewhere give the coordinator
    (process 0's host:port), the process count and this process's id (the command lines'
    --coordinator_address, --num_processes, --process_id), or, where JAX detects the cluster
    (SLURM, Open MPI), set JAX_COORDINATOR_ADDRESS alone.
    CPU devices talk through gloo. A process that stops answering for ``heartbeat_timeout_s``
    seconds (killed, its host lost) ends the others: JAX aborts them with a message naming it.
    """
    if not (coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
            or "," in os.environ.get("TPU_WORKER_HOSTNAMES", "") or has_tpu_chips()):
        return  # one process: nothing to join
    if jax.distributed.is_initialized():  # a second run in this process (a notebook, a test)
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address or None, num_processes or None,
                               None if process_id < 0 else process_id,
                               heartbeat_timeout_seconds=heartbeat_timeout_s)


# PCI device ids of TPU chips (v3, v4, v5p, v5e, v6e, TPU7x) under Google's vendor id 0x1ae0, the
# ones JAX's Cloud TPU detection looks for (jax/_src/hardware_utils.py); Google's vendor id alone
# would also match the gVNIC network card of any GCE VM.
_TPU_PCI_DEVICES = ("0x0027", "0x005e", "0x0062", "0x0063", "0x006f", "0x0076")


def has_tpu_chips() -> bool:
    """Whether this host has TPU chips attached (a Cloud TPU VM)."""
    return any((device / "vendor").read_text().strip() == "0x1ae0"
               and (device / "device").read_text().strip() in _TPU_PCI_DEVICES
               for device in Path("/sys/bus/pci/devices").glob("*"))


def is_primary() -> bool:
    """Whether this process writes the run's files (process 0)."""
    return jax.process_index() == 0


def row_block(mesh, rows: int) -> tuple[int, int]:
    """(index, count): which of ``count`` equal consecutive blocks of a ``rows``-row batch split
    over ``mesh``'s data axes this process's devices hold (processes that share a block, when
    a model axis spans hosts, hold it both); (0, 1) without a mesh (one device)."""
    if mesh is None:
        return 0, 1
    spans = {(s.start or 0, rows if s.stop is None else s.stop) for s, *_ in
             batch_sharding(mesh, ndim=1).addressable_devices_indices_map((rows,)).values()}
    start, stop = min(a for a, _ in spans), max(b for _, b in spans)
    if sum(b - a for a, b in spans) != stop - start or rows % (stop - start):
        raise ValueError(f"this process's devices hold rows {sorted(spans)} of {rows}, not one "
                         f"block of consecutive rows: order the mesh's devices process by process")
    return start // (stop - start), rows // (stop - start)


def row_slice(mesh, rows: int) -> slice:
    """The rows of a ``rows``-row batch that this process holds (`row_block`)."""
    index, count = row_block(mesh, rows)
    return slice(index * rows // count, (index + 1) * rows // count)


def put_rows(mesh, tree, axis: int = 0):
    """Global arrays, dimension ``axis`` split over the mesh's data axes, from each process's
    rows (numpy arrays holding its `row_slice` along ``axis``)."""
    _, count = row_block(mesh, data_parallel_size(mesh))

    def put(x):
        x = np.asarray(x)
        shape = x.shape[:axis] + (x.shape[axis] * count,) + x.shape[axis + 1:]
        return jax.make_array_from_process_local_data(
            batch_sharding(mesh, x.ndim, axis), x, shape)
    return jax.tree.map(put, tree)


def local_rows(tree):
    """Numpy copies of this process's rows of arrays split over a mesh's data axes (their first
    dimension); arrays that are whole here (numpy, one process) come back whole."""
    def rows(x):
        if not isinstance(x, jax.Array) or x.is_fully_addressable:
            return np.asarray(x)
        blocks = {shard.index[0].start or 0: shard.data for shard in x.addressable_shards}
        return np.concatenate([np.asarray(blocks[start]) for start in sorted(blocks)])
    return jax.tree.map(rows, tree)


def fetch(tree):
    """Numpy copies of arrays, whole on every process (gathered when they span processes)."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    return jax.tree.map(lambda x: np.asarray(x) if not isinstance(x, jax.Array)
                        or x.is_fully_replicated else multihost_utils.process_allgather(x, True),
                        tree)


def allgather(obj) -> list:
    """Every process's ``obj`` (any picklable value), in process order; ``[obj]`` alone."""
    if jax.process_count() == 1:
        return [obj]
    data = np.frombuffer(pickle.dumps(obj), np.uint8)
    sizes = multihost_utils.process_allgather(np.int64(data.size))
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[:data.size] = data
    gathered = multihost_utils.process_allgather(padded)
    return [pickle.loads(row[:size].tobytes()) for row, size in zip(gathered, sizes)]


def gather_blocks(mesh, rows: int, part) -> list:
    """Every row block's ``part`` (what this process made of its rows of a ``rows``-row batch),
    in row order: one per block, however many processes hold it."""
    index, _ = row_block(mesh, rows)
    return [p for _, p in sorted(dict(allgather((index, part))).items())]


def sync(name: str) -> None:
    """Wait until every process has reached the point called ``name``."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)
