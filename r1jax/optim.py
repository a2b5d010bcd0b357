"""What every trainer's update shares: the optimizer, exact gradient accumulation over
microbatches, and an update that is skipped when anything in it is not finite.

A loss is carried as `LossTerms`: an unreduced sum over the batch, its denominator and metric
sums. Terms of disjoint microbatches add (`combine`), and the gradients of the sums add, so
dividing once at the end gives exactly the full-batch loss and gradient whatever the number of
microbatches (the tunix design; GRPO's aggregation modes in grpo.py rely on it).

    params, opt_state, terms, metrics = guarded_update(
        terms_fn, settings.make(), params, opt_state, microbatches)   # inside jax.jit
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

SCHEDULES = ("constant", "cosine")
COMPUTE_DTYPES = ("auto", "float32", "bfloat16")


def compute_dtype(name: str) -> str:
    """The dtype of forward and backward passes: ``name``, or for "auto" float32 on CPU (bf16 is
    no faster there) and bfloat16 on accelerators. Parameters and optimizer state stay float32
    (the master copy): at the paper's learning rates 0.02 + 1e-6 == 0.02 in bfloat16, so updates
    applied to bfloat16 parameters mostly vanish."""
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype {name!r} is not one of {COMPUTE_DTYPES}")
    if name == "auto":
        return "float32" if jax.default_backend() == "cpu" else "bfloat16"
    return name


def cast_floating(tree, dtype: str):
    """``tree`` with its floating arrays in ``dtype`` (those already in it untouched): the
    compute copy of float32 master parameters. Gradients flow back through the cast in float32."""
    dtype = jnp.dtype(dtype)
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating)
                        and x.dtype != dtype else x, tree)


@dataclasses.dataclass(frozen=True)
class OptimizerSettings:
    """AdamW with linear warm-up, a schedule and global-norm clipping; hashable, so it is a
    static argument of the jitted updates (one compilation per distinct setting)."""

    lr: float
    total_steps: int  # optimizer updates (for GRPO: steps x minibatches x epochs)
    warmup_steps: int = 0
    schedule: str = "constant"
    weight_decay: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    grad_clip: float = 1.0  # 0 = no clipping
    end_lr_fraction: float = 0.0  # cosine decays to lr x this (R1's SFT: 0.1)

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; use one of {SCHEDULES}")
        if (self.total_steps < 1 or self.warmup_steps < 0 or self.grad_clip < 0
                or not 0 <= self.end_lr_fraction <= 1):
            raise ValueError(f"optimizer needs total_steps >= 1, warmup_steps >= 0, "
                             f"grad_clip >= 0 and end_lr_fraction in [0, 1], got {self}")

    @classmethod
    def from_config(cls, c, total_steps: int) -> "OptimizerSettings":
        """From a config section's lr, warmup_steps, schedule, weight_decay, b1, b2, grad_clip
        and end_lr_fraction."""
        return cls(lr=float(c.lr), total_steps=int(total_steps), warmup_steps=int(c.warmup_steps),
                   schedule=c.schedule, weight_decay=float(c.weight_decay), b1=float(c.b1),
                   b2=float(c.b2), grad_clip=float(c.grad_clip),
                   end_lr_fraction=float(c.end_lr_fraction))

    def make(self) -> optax.GradientTransformation:
        return make_optimizer(self.lr, self.total_steps, self.warmup_steps, self.schedule,
                              self.weight_decay, self.b1, self.b2, self.grad_clip,
                              self.end_lr_fraction)


def learning_rate_schedule(lr: float, warmup_steps: int, total_steps: int, schedule: str,
                           end_lr_fraction: float = 0.0):
    """Linear warm-up to ``lr``, then ``constant`` or ``cosine`` decay to ``lr`` x
    ``end_lr_fraction`` at ``total_steps``."""
    if schedule == "constant":
        after = optax.constant_schedule(lr)
    elif schedule == "cosine":
        after = optax.cosine_decay_schedule(lr, max(1, total_steps - warmup_steps),
                                            alpha=end_lr_fraction)
    else:
        raise ValueError(f"unknown schedule {schedule!r}; use 'constant' or 'cosine'")
    if warmup_steps <= 0:
        return after
    return optax.join_schedules(
        [optax.linear_schedule(0.0, lr, warmup_steps), after], [warmup_steps])


def make_optimizer(lr: float, total_steps: int, warmup_steps: int = 0,
                   schedule: str = "constant", weight_decay: float = 0.0, b1: float = 0.9,
                   b2: float = 0.999, grad_clip: float = 1.0,
                   end_lr_fraction: float = 0.0) -> optax.GradientTransformation:
    """AdamW (decoupled weight decay) after clipping the global gradient norm to ``grad_clip``."""
    chain = [optax.clip_by_global_norm(grad_clip)] if grad_clip > 0 else []
    schedule_fn = learning_rate_schedule(lr, warmup_steps, total_steps, schedule, end_lr_fraction)
    chain.append(optax.adamw(schedule_fn,
                             b1=b1, b2=b2, weight_decay=weight_decay))
    return optax.chain(*chain)


def init_opt_state(optimizer: optax.GradientTransformation, params, mesh):
    """The optimizer state of ``params``, its scalar counters replicated over ``mesh`` (so the
    first update returns them with the sharding it was given, and compiles once)."""
    replicated = NamedSharding(mesh, P())
    return jax.tree.map(lambda x: x if x.ndim else jax.device_put(x, replicated),
                        optimizer.init(params))


class LossTerms(NamedTuple):
    """A loss as (sum over the batch, denominator, metric sums); loss = loss_sum / denom."""

    loss_sum: jax.Array
    denom: jax.Array
    stats: dict  # sums over the batch; keys ending in "_max" are maxima

    def combine(self, other: "LossTerms") -> "LossTerms":
        """The terms of the union of two disjoint batches."""
        stats = {k: (jnp.maximum if k.endswith("_max") else jnp.add)(v, other.stats[k])
                 for k, v in self.stats.items()}
        return LossTerms(self.loss_sum + other.loss_sum, self.denom + other.denom, stats)


def split_microbatches(tree, microbatches: int):
    """Every [B, ...] host array of ``tree`` as [microbatches, B / microbatches, ...]."""
    return jax.tree.map(lambda x: x.reshape(microbatches, -1, *x.shape[1:]), tree)


def accumulate_gradients(terms_fn, params, microbatches):
    """(LossTerms, gradient of loss_sum) summed over the leading axis of ``microbatches``.

    ``terms_fn(params, microbatch) -> LossTerms``; the microbatches after the first run in a
    ``lax.scan``, so memory holds one microbatch's activations at a time.
    """
    def loss_sum(p, mb):
        terms = terms_fn(p, mb)
        return terms.loss_sum, terms

    def value_and_grad(mb):
        (_, terms), grads = jax.value_and_grad(loss_sum, has_aux=True)(params, mb)
        return terms, grads

    terms, grads = value_and_grad(jax.tree.map(lambda x: x[0], microbatches))
    if jax.tree.leaves(microbatches)[0].shape[0] > 1:
        def step(carry, mb):
            t, g = value_and_grad(mb)
            return (carry[0].combine(t), jax.tree.map(jnp.add, carry[1], g)), None

        rest = jax.tree.map(lambda x: x[1:], microbatches)
        (terms, grads), _ = jax.lax.scan(step, (terms, grads), rest)
    return terms, grads


def guarded_update(terms_fn, optimizer, params, opt_state, microbatches):
    """One optimizer update from gradients accumulated over ``microbatches`` (see
    `accumulate_gradients`), divided once by the total denominator.

    An update whose loss, gradients or new params are not finite is not applied: params and
    optimizer state come back unchanged and ``skipped`` is True. Returns (params, opt_state,
    terms, metrics) with metrics loss, grad_norm and skipped.
    """
    terms, grad_sums = accumulate_gradients(terms_fn, params, microbatches)
    denom = jnp.maximum(terms.denom, 1.0)
    loss = terms.loss_sum / denom
    grads = jax.tree.map(lambda g: g / denom, grad_sums)
    updates, new_opt_state = optimizer.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    ok = jnp.all(jnp.stack([jnp.isfinite(loss)] + [
        jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves((grads, new_params))]))

    def keep(new, old):
        return jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)

    metrics = dict(loss=loss, grad_norm=optax.tree.norm(grads), skipped=~ok)
    return keep(new_params, params), keep(new_opt_state, opt_state), terms, metrics
