"""Does an RL experiment fit a TPU slice? Compile its steps for the slice on any machine.

    python -m r1jax.compile_check --config=experiments/r1_zero_qwen2_5_math_1_5b.py \\
        --topology=v5e:2x4

Needs libtpu (``pip install -e '.[tpu]'``) but no TPU: `jax.experimental.topologies` gives the
devices of topology TOPOLOGY, over which the experiment's mesh (``config.mesh``) is built, and
the RL job's three jitted steps are lowered and compiled with the experiment's real shapes and
shardings, from abstract arrays (nothing is allocated):

    sample      B prompts of data.max_prompt_tokens (bucketed), G samples, max_new_tokens
    reference   one microbatch of rows through the reference model (when kl_coef > 0)
    update      one optimizer update over `microbatches` microbatches of a minibatch

For each step it prints, per device, XLA's memory analysis (arguments, outputs, temporaries) plus
what stays resident outside the step (the fp32 policy, reference and optimizer state that the
step does not take as arguments), the peak against the chip's HBM, and the flops and bytes XLA
counts, with the step-time bounds they imply at the chip's peak bf16 flops and HBM bandwidth.
XLA counts a loop's body once: the sampler's figures are those of its prefill and one decode
step, not of the whole generation, and the update's those of two microbatches (the first, and
the scanned body the others run), not of all ``microbatches``. A second table scales them to a
whole RL step (`step_bounds`): per chip, each step's flops and bytes, its time bound and the
model-flops utilisation that bound allows. "auto" compute dtypes are bfloat16, as on a TPU.

An experiment whose peak exceeds ``1 - HEADROOM`` of a chip's HBM is reported with its largest
parts and the settings that shrink them, and the command exits 1.
"""

import dataclasses
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from r1jax import cli, models, policy, rl, sampling, stopping
from r1jax.mesh import make_mesh
from r1jax.models.sharding import BATCH_AXES
from r1jax.models.transformer import param_path

HEADROOM = 0.10
GIB = 1 << 30


@dataclasses.dataclass(frozen=True)
class Chip:
    hbm_bytes: int
    bf16_flops: float  # peak per second
    hbm_bytes_per_s: float


# Google's published per-chip figures (Cloud TPU system architecture pages).
CHIPS = {"v4": Chip(32 * GIB, 275e12, 1.2e12), "v5e": Chip(16 * GIB, 197e12, 8.19e11),
         "v5p": Chip(95 * GIB, 459e12, 2.765e12), "v6e": Chip(32 * GIB, 918e12, 1.64e12)}


@dataclasses.dataclass
class StepReport:
    name: str
    arguments: int  # bytes per device
    outputs: int
    temporaries: int
    aliased: int
    resident: int  # held outside the step while it runs
    flops: float
    bytes_accessed: float
    error: str = ""  # XLA's own refusal (it fails a compile whose buffers exceed the HBM)

    @property
    def peak(self) -> int:
        return self.resident + self.arguments + self.outputs - self.aliased + self.temporaries


def topology_devices(topology: str):
    """The devices of TPU topology ``topology`` ("v5e:2x4"); an error naming what is missing."""
    # libtpu admits one process per machine (/tmp/libtpu_lockfile) because processes on a TPU VM
    # share its chips; compiling for a topology touches no chip, so checks may run side by side.
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    try:
        from jax.experimental import topologies

        return topologies.get_topology_desc(platform="tpu", topology_name=topology).devices
    except Exception as e:  # no libtpu, or a topology name libtpu does not know
        raise ValueError(f"cannot get TPU topology {topology!r} ({e}); it needs libtpu: "
                         f"pip install -e '.[tpu]'") from e


def chip_of(topology: str) -> Chip:
    generation = topology.split(":")[0]
    if generation not in CHIPS:
        raise ValueError(f"unknown TPU generation {generation!r}; known: {', '.join(CHIPS)}")
    return CHIPS[generation]


def device_bytes(tree) -> int:
    """Bytes per device of a tree of sharded ShapeDtypeStructs (the first device's share)."""
    return sum(int(np.prod(x.sharding.shard_shape(x.shape))) * x.dtype.itemsize
               for x in jax.tree.leaves(tree))


def _abstract(shape, dtype, sharding):
    return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)


def _params(cfg, mesh, dtype):
    return jax.tree.map(lambda a, s: _abstract(a.shape, a.dtype, s),
                        models.abstract_params(cfg, dtype),
                        models.param_shardings(cfg, mesh, dtype))


def _moment_sharding(path, leaf, params, mesh):
    """An optimizer-state leaf's sharding: that of the parameter whose path ends its own (a
    moment, "…/mu/layers/0/attn/q_proj/kernel"), replicated for counters (`init_opt_state`)."""
    if not leaf.ndim:
        return NamedSharding(mesh, P())
    name = param_path(path)
    for param_key, param in jax.tree_util.tree_flatten_with_path(params)[0]:
        if name.endswith("/" + param_path(param_key)):
            return param.sharding
    raise ValueError(f"optimizer state {name} matches no parameter")


def _batch(mesh, rows: int, share: int, prompt_len: int, new_tokens: int, microbatches: int = 0):
    """The RL batch's arrays, [rows, ...] or [microbatches, rows / microbatches, ...], with one
    prompt row per ``share`` rows (`rl.prompt_share`)."""
    def lead(n):
        return (microbatches, n // microbatches) if microbatches else (n,)

    axis = 1 if microbatches else 0
    prompts = {"prompts": ((prompt_len,), jnp.int32), "prompt_mask": ((prompt_len,), jnp.bool_)}
    shapes = {"tokens": ((new_tokens,), jnp.int32), "mask": ((new_tokens,), jnp.bool_),
              "loss_mask": ((new_tokens,), jnp.bool_), "logprobs": ((new_tokens,), jnp.float32),
              "ref_logprobs": ((new_tokens,), jnp.float32), "advantages": ((), jnp.float32)}
    return {k: _abstract((*lead(n), *tail), dtype,
                         models.batch_sharding(mesh, ndim=axis + 1 + len(tail), axis=axis))
            for part, n in ((prompts, rows // share), (shapes, rows))
            for k, (tail, dtype) in part.items()}


def _report(name, lowered, resident) -> StepReport:
    """The compiled step's figures, or XLA's error when it refuses to compile for lack of HBM."""
    try:
        compiled = lowered.compile()
    except Exception as e:  # XlaRuntimeError, whose class jax does not export stably
        if "RESOURCE_EXHAUSTED" not in str(e) and "out of memory" not in str(e):
            raise
        message = [line for line in str(e).splitlines() if "memory" in line] or [str(e)]
        return StepReport(name, 0, 0, 0, 0, resident, 0.0, 0.0, message[0].strip().rstrip("."))
    memory, cost = compiled.memory_analysis(), compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return StepReport(name, memory.argument_size_in_bytes, memory.output_size_in_bytes,
                      memory.temp_size_in_bytes, memory.alias_size_in_bytes, resident,
                      float(cost.get("flops", 0.0)), float(cost.get("bytes accessed", 0.0)))


def compile_steps(config, mesh) -> tuple[list[StepReport], dict[str, int]]:
    """(a report per compiled step, the resident parts in bytes per device) for experiment
    ``config`` on ``mesh``."""
    c = config.rl
    if c.compute_dtype == "auto":
        c = c.copy_and_resolve_references()
        c.compute_dtype = "bfloat16"
    cfg = policy.model_config(config.model)
    settings = rl.UpdateSettings.from_config(c)
    params = _params(cfg, mesh, jnp.float32)
    compute = _params(cfg, mesh, jnp.dtype(settings.compute_dtype))
    optimizer = settings.optimizer.make()
    opt_state = jax.tree_util.tree_map_with_path(
        lambda path, a: _abstract(a.shape, a.dtype, _moment_sharding(path, a, params, mesh)),
        jax.eval_shape(optimizer.init, params))
    parts = {"policy (fp32)": device_bytes(params), "reference (fp32)": device_bytes(params),
             "optimizer state": device_bytes(opt_state)}
    resident_all = sum(parts.values())

    B, G, N = c.prompts_per_step, c.group_size, c.max_new_tokens
    prompt_len = sampling.prompt_bucket(config.data.max_prompt_tokens)
    strings = tuple(s.encode() for s in c.stop_strings)
    width = stopping.history_width(strings)
    replicated = NamedSharding(mesh, P())
    rows_spec = NamedSharding(mesh, P(BATCH_AXES))
    sample = sampling._generate.lower(
        cfg, compute, _abstract((B, prompt_len), jnp.int32, rows_spec),
        _abstract((B, prompt_len), jnp.bool_, rows_spec), jax.eval_shape(jax.random.key, 0),
        _abstract((cfg.vocab_size, 2 * width + 2), jnp.int32, replicated) if strings else None,
        num_samples=G, max_new_tokens=N, temperature=float(c.temperature),
        top_p=float(c.top_p), top_k=int(c.top_k), stop_ids=(0,), stop_strings=strings,
        pad_id=0, mesh=mesh)
    reports = [_report("sample", sample, resident_all)]
    rows, share = B * G // c.num_minibatches, rl.prompt_share(c, mesh)
    if settings.kl_coef:
        reference = rl.reference_logprobs.lower(
            cfg, settings, params, _batch(mesh, rows // c.microbatches, share, prompt_len, N))
        reports.append(_report("reference", reference, resident_all - parts["reference (fp32)"]))
    update = rl.update.lower(cfg, settings, params, opt_state,
                             _batch(mesh, rows, share, prompt_len, N, c.microbatches))
    reports.append(_report("update", update, parts["reference (fp32)"]))
    return reports, parts


def fit_report(reports: list[StepReport], parts: dict[str, int], chip: Chip) -> tuple[str, bool]:
    """(a markdown table of the steps against the chip, whether every step fits with headroom);
    when one does not, the table is followed by its largest parts and what shrinks them."""
    lines = ["| step | arguments GiB | outputs GiB | temporaries GiB | resident GiB | peak GiB | "
             "of HBM | GFLOP | bound at peak flops | bound at HBM bandwidth |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in reports:
        if r.error:
            lines.append(f"| {r.name} | XLA refused to compile it: {r.error} |")
            continue
        lines.append(
            f"| {r.name} | {r.arguments / GIB:.2f} | {r.outputs / GIB:.2f} | "
            f"{r.temporaries / GIB:.2f} | {r.resident / GIB:.2f} | {r.peak / GIB:.2f} | "
            f"{r.peak / chip.hbm_bytes:.0%} | {r.flops / 1e9:.1f} | "
            f"{r.flops / chip.bf16_flops * 1e3:.1f} ms | "
            f"{r.bytes_accessed / chip.hbm_bytes_per_s * 1e3:.1f} ms |")
    lines.append("")
    lines.append("Resident per device: " + ", ".join(f"{k} {v / GIB:.2f} GiB"
                                                     for k, v in parts.items()))

    def fits(r):
        return not r.error and r.peak <= (1 - HEADROOM) * chip.hbm_bytes

    for r in reports:
        if not fits(r):
            largest = sorted([("temporaries", r.temporaries), ("arguments", r.arguments),
                              ("resident state", r.resident)], key=lambda p: -p[1])
            lines.append(
                f"\n{r.name} does not fit: "
                + (r.error if r.error else f"{r.peak / GIB:.2f} GiB of "
                   f"{chip.hbm_bytes / GIB:.0f} GiB ({HEADROOM:.0%} kept free); largest: "
                   + ", ".join(f"{name} {size / GIB:.2f} GiB" for name, size in largest))
                + ". Temporaries shrink with rl.microbatches and rl.logprob_chunk (update, "
                  "reference) or fewer prompts_per_step x group_size x max_new_tokens (the "
                  "sampler's KV cache); parameters and optimizer state with a larger mesh.fsdp.")
    return "\n".join(lines), all(map(fits, reports))


@dataclasses.dataclass(frozen=True)
class StepShape:
    """What one RL step runs: ``prompts`` x ``samples`` rows of ``prompt_len`` prompt and
    ``new_tokens`` new positions over ``devices`` chips, in ``minibatches`` x ``microbatches``
    pieces (the reference pass, when compiled, runs once per piece; the update over each
    minibatch ``epochs`` times), one prompt row per ``share`` completion rows."""

    prompts: int
    samples: int
    prompt_len: int
    new_tokens: int
    devices: int
    minibatches: int
    microbatches: int
    epochs: int
    share: int

    @classmethod
    def of(cls, config, mesh) -> "StepShape":
        c = config.rl
        return cls(c.prompts_per_step, c.group_size,
                   sampling.prompt_bucket(config.data.max_prompt_tokens), c.max_new_tokens,
                   mesh.devices.size, c.num_minibatches, c.microbatches, c.epochs,
                   rl.prompt_share(c, mesh))


def step_bounds(cfg, shape: StepShape, reports: list[StepReport], chip: Chip,
                compute_itemsize: int) -> list[tuple[str, float, float, float, float]]:
    """Per chip and per RL step: (step, model flops, flops, bytes, time bound in seconds) of
    each compiled step, the bound the larger of its flops at peak and its bytes at HBM bandwidth.

    XLA counts a loop's body once, so its figures for a program are scaled by the times the step
    runs it: the reference once per microbatch, the update's program (two microbatches, the first
    and the scanned body) microbatches / 2 times per minibatch and epoch. The sampler's program
    is its prefill and one decode step: the other decode steps are counted here, each reading
    the weights (gathered, in the compute dtype) and its rows' whole KV cache. Model flops
    (`models.forward_flops`) count what the shapes need (causal attention, no remat), so model
    flops / (peak x bound) is the model-flops utilisation the step cannot exceed."""
    P, N, rows = shape.prompt_len, shape.new_tokens, shape.prompts * shape.samples
    completion_pairs = rows * (N * P + N * (N + 1) // 2)
    prompt_rows = rows // shape.share
    scored = models.forward_flops(cfg, prompt_rows * P + rows * N,
                                  prompt_rows * P * (P + 1) // 2 + completion_pairs, rows * N)
    prefill = models.forward_flops(cfg, shape.prompts * P, shape.prompts * P * (P + 1) // 2,
                                   shape.prompts)
    decode = models.forward_flops(cfg, rows * N, completion_pairs, rows * N) / shape.devices
    kv_bytes = 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * compute_itemsize
    decode_bytes = N * (models.num_params(cfg) * compute_itemsize
                        + rows // shape.devices * (P + N) * kv_bytes)
    model = {"sample": prefill / shape.devices + decode, "reference": scored / shape.devices,
             "update": 3 * scored * shape.epochs / shape.devices}
    runs = {"reference": shape.minibatches * shape.microbatches,
            "update": shape.minibatches * shape.epochs * shape.microbatches
            / min(2, shape.microbatches)}
    out = []
    for r in reports:
        if r.error:
            continue
        if r.name == "sample":
            rest = (N - 1) / N
            flops, byte_count = r.flops + decode * rest, r.bytes_accessed + decode_bytes * rest
            bound = max(r.flops / chip.bf16_flops, r.bytes_accessed / chip.hbm_bytes_per_s) + (
                rest * max(decode / chip.bf16_flops, decode_bytes / chip.hbm_bytes_per_s))
        else:
            flops, byte_count = r.flops * runs[r.name], r.bytes_accessed * runs[r.name]
            bound = max(flops / chip.bf16_flops, byte_count / chip.hbm_bytes_per_s)
        out.append((r.name, model[r.name], flops, byte_count, bound))
    return out


def bounds_report(bounds, chip: Chip) -> str:
    """A markdown table of `step_bounds` with their sum: the RL step's time and MFU bounds."""
    lines = ["| per RL step, per chip | model TFLOP | TFLOP (XLA, scaled) | GB accessed | "
             "time bound | MFU at the bound |", "|---|---|---|---|---|---|"]
    total = ("RL step", *(sum(b[i] for b in bounds) for i in range(1, 5)))
    for name, model, flops, byte_count, bound in [*bounds, total]:
        lines.append(f"| {name} | {model / 1e12:,.1f} | {flops / 1e12:,.1f} | "
                     f"{byte_count / 1e9:,.1f} | {bound:,.2f} s | "
                     f"{model / (chip.bf16_flops * bound):.0%} |")
    return "\n".join(lines)


_TOPOLOGY = flags.DEFINE_string("topology", None, "a TPU topology, e.g. v5e:2x4, v5p:2x2x4")


def main(argv: list[str]) -> bool:
    cli.parse("r1jax.compile_check", argv)
    config, topology = cli.CONFIG.value, _TOPOLOGY.value
    cli.require("r1jax.compile_check", config=config, topology=topology)
    try:
        chip = chip_of(topology)
        devices = topology_devices(topology)
        mesh = make_mesh(**config.mesh, devices=devices)
        rl.check_batch(config.rl, mesh)
    except ValueError as e:
        sys.exit(f"r1jax.compile_check: {e}")
    print(f"{topology}: {len(devices)} x {devices[0].device_kind}, mesh {dict(mesh.shape)}")
    reports, parts = compile_steps(config, mesh)
    table, fits = fit_report(reports, parts, chip)
    print(table)
    compute_dtype = "bfloat16" if config.rl.compute_dtype == "auto" else config.rl.compute_dtype
    bounds = step_bounds(policy.model_config(config.model), StepShape.of(config, mesh), reports,
                         chip, jnp.dtype(compute_dtype).itemsize)
    if bounds:  # none when XLA refused every step
        print()
        print(bounds_report(bounds, chip))
    return fits


if __name__ == "__main__":
    sys.exit(0 if main(sys.argv[1:]) else 1)
